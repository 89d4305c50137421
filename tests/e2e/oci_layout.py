"""Build OCI image layouts offline, for the end-to-end tests.

Everything here is plain Python: random-content gzip/tar layers, image
configs, manifests and indexes written into an OCI image layout directory
(``oci-layout``, ``index.json``, ``blobs/sha256/…``) that skopeo and podman
read as ``oci:<dir>:<ref>``.  Each builder returns a description of what it
wrote (the digests of every manifest, config and layer) so that a test can
compare what a client pulled back with what was pushed.

Layers contain random bytes, so two builds never share a blob unless asked
to: no client's blob-info cache can satisfy a push from an earlier test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024

# OCI media types
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
# Docker schema2 media types
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

REF_NAME = "org.opencontainers.image.ref.name"

EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    """Compact, key-sorted JSON: stable bytes, hence stable digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self, **extra) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(extra)
        return d


@dataclass
class Layer:
    """A layer blob: gzip-compressed tar of one random file."""

    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar: the config's rootfs.diff_ids

    @property
    def digest(self) -> str:
        return self.descriptor.digest


@dataclass
class BuiltImage:
    """One image manifest (OCI or Docker schema2) written into a layout."""

    manifest: Descriptor
    config: Descriptor
    layers: list[Layer]
    architecture: str = "amd64"
    os: str = "linux"

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def config_digest(self) -> str:
        return self.config.digest

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def blob_digests(self) -> set[str]:
        return {self.config.digest, *self.layer_digests}


@dataclass
class BuiltIndex:
    """An image index (or Docker manifest list) and its child images."""

    manifest: Descriptor
    children: list[BuiltImage] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def child(self, architecture: str) -> BuiltImage:
        for c in self.children:
            if c.architecture == architecture:
                return c
        raise KeyError(architecture)


@dataclass
class BuiltArtifact:
    """An OCI 1.1 artifact: image manifest with artifactType, empty config, a subject."""

    manifest: Descriptor
    artifact_type: str
    subject: Descriptor | None
    config: Descriptor
    layers: list[Descriptor]

    @property
    def digest(self) -> str:
        return self.manifest.digest


class OCILayout:
    """An OCI image layout directory being written.

    >>> layout = OCILayout(tmp_path / "img")
    >>> img = layout.add_image("v1", layer_sizes=[1024, 64 * MiB])
    >>> f"oci:{layout.path}:v1"   # what skopeo/podman read
    """

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self._entries: list[dict] = []
        self._write_index()

    # -- low level ---------------------------------------------------------

    def ref(self, tag: str) -> str:
        """The containers/image reference of a tag in this layout."""
        return f"oci:{self.path}:{tag}"

    def blob_path(self, digest: str) -> Path:
        algo, hexpart = digest.split(":", 1)
        return self.path / "blobs" / algo / hexpart

    def write_blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = sha256_digest(data)
        p = self.blob_path(digest)
        if not p.exists():
            p.write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def tag(self, name: str, desc: Descriptor, platform: dict | None = None) -> None:
        """Point index.json's ref name `name` at `desc` (replacing an older entry)."""
        self._entries = [e for e in self._entries if e.get("annotations", {}).get(REF_NAME) != name]
        entry = desc.to_json(annotations={REF_NAME: name})
        if platform:
            entry["platform"] = platform
        self._entries.append(entry)
        self._write_index()

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "manifests": self._entries}
        (self.path / "index.json").write_text(json.dumps(index, indent=2))

    # -- layers ------------------------------------------------------------

    def add_random_layer(
        self, size: int, media_type: str = OCI_LAYER_GZIP, compresslevel: int = 1
    ) -> Layer:
        """A gzip'd tar holding one file of `size` random bytes."""
        payload = os.urandom(size)
        name = "data-" + hashlib.sha256(payload[:64]).hexdigest()[:12] + ".bin"
        tar_buf = io.BytesIO()
        with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            info = tarfile.TarInfo(name)
            info.size = size
            info.mode = 0o644
            info.mtime = 0
            tf.addfile(info, io.BytesIO(payload))
        tar_bytes = tar_buf.getvalue()
        del payload
        diff_id = sha256_digest(tar_bytes)
        gz = gzip.compress(tar_bytes, compresslevel=compresslevel, mtime=0)
        del tar_bytes
        return Layer(self.write_blob(gz, media_type), diff_id)

    # -- images ------------------------------------------------------------

    def add_image(
        self,
        tag: str | None,
        layer_sizes=(4096, 16384),
        *,
        architecture: str = "amd64",
        os_name: str = "linux",
        docker: bool = False,
        layers: list[Layer] | None = None,
        extra_config: dict | None = None,
    ) -> BuiltImage:
        """An image: OCI media types, or Docker schema2 ones with `docker=True`.

        `layers` reuses existing Layer objects (e.g. to share a base layer
        between two images); otherwise one random layer per size is made.
        Untagged images (tag=None) are children for an index.
        """
        layer_mt = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
        if layers is None:
            layers = [self.add_random_layer(s, layer_mt) for s in layer_sizes]
        config = {
            "architecture": architecture,
            "os": os_name,
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh"],
                "Labels": {"ocireg.e2e.nonce": os.urandom(8).hex()},
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": f"ocireg e2e layer {i}"}
                for i in range(len(layers))
            ],
        }
        if architecture == "arm64":
            config["variant"] = "v8"
        if extra_config:
            config.update(extra_config)
        config_desc = self.write_blob(
            canonical_json(config), DOCKER_CONFIG if docker else OCI_CONFIG
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": config_desc.to_json(),
            "layers": [layer.descriptor.to_json() for layer in layers],
        }
        manifest_desc = self.write_blob(
            json.dumps(manifest, indent=3).encode(),
            DOCKER_MANIFEST if docker else OCI_MANIFEST,
        )
        img = BuiltImage(manifest_desc, config_desc, list(layers), architecture, os_name)
        if tag is not None:
            self.tag(tag, manifest_desc)
        return img

    def export_dir(self, image: BuiltImage, dest: os.PathLike | str) -> str:
        """Write `image` as a containers/image ``dir:`` directory; return its reference.

        skopeo 1.9's ``oci:`` transport only resolves index.json entries with
        OCI media types, so a Docker schema2 manifest cannot be read from an
        OCI layout; the ``dir:`` transport takes any manifest byte-for-byte
        (``manifest.json`` + blobs named by their hex digest + ``version``).
        """
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "version").write_text("Directory Transport Version: 1.1\n")
        (dest / "manifest.json").write_bytes(self.read_blob(image.digest))
        for digest in [image.config_digest, *image.layer_digests]:
            target = dest / digest.split(":", 1)[1]
            if not target.exists():
                os.link(self.blob_path(digest), target)
        return f"dir:{dest}"

    def add_index(
        self,
        tag: str | None,
        architectures=("amd64", "arm64"),
        layer_sizes=(4096, 8192),
        *,
        docker: bool = False,
    ) -> BuiltIndex:
        """A multi-architecture index (or Docker manifest list) of fresh images."""
        children = [
            self.add_image(None, layer_sizes, architecture=arch, docker=docker)
            for arch in architectures
        ]
        entries = []
        for c in children:
            platform = {"architecture": c.architecture, "os": c.os}
            if c.architecture == "arm64":
                platform["variant"] = "v8"
            entries.append(c.manifest.to_json(platform=platform))
        mt = DOCKER_MANIFEST_LIST if docker else OCI_INDEX
        index = {"schemaVersion": 2, "mediaType": mt, "manifests": entries}
        desc = self.write_blob(json.dumps(index, indent=3).encode(), mt)
        if tag is not None:
            self.tag(tag, desc)
        return BuiltIndex(desc, children)

    def add_artifact(
        self,
        tag: str | None,
        subject: Descriptor | None,
        artifact_type: str = "application/vnd.example.sbom.v1",
        payloads: list[tuple[str, bytes]] | None = None,
        annotations: dict | None = None,
    ) -> BuiltArtifact:
        """An OCI 1.1 artifact: an image manifest with `artifactType`, the
        empty config (`application/vnd.oci.empty.v1+json`, ``{}``) and a
        `subject` (the manifest it refers to)."""
        config = self.write_blob(EMPTY_JSON, OCI_EMPTY)
        assert config.digest == EMPTY_JSON_DIGEST
        if payloads is None:
            payloads = [
                (
                    "application/vnd.example.sbom.v1+json",
                    canonical_json({"sbom": os.urandom(16).hex()}),
                ),
            ]
        layers = [self.write_blob(data, mt) for mt, data in payloads]
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layers],
            "annotations": {
                "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
                **(annotations or {}),
            },
        }
        if subject is not None:
            manifest["subject"] = subject.to_json()
        desc = self.write_blob(json.dumps(manifest, indent=3).encode(), OCI_MANIFEST)
        if tag is not None:
            self.tag(tag, desc)
        return BuiltArtifact(desc, artifact_type, subject, config, layers)


# -- reading layouts back (what a client pulled) -----------------------------


@dataclass
class PulledManifest:
    digest: str
    media_type: str
    raw: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.raw)


def read_layout_manifest(path: os.PathLike | str, tag: str) -> PulledManifest:
    """The manifest that index.json's ref name `tag` points to, with its digest
    checked against its bytes."""
    path = Path(path)
    index = json.loads((path / "index.json").read_text())
    for e in index["manifests"]:
        if e.get("annotations", {}).get(REF_NAME) == tag:
            raw = _read_verified(path, e["digest"])
            return PulledManifest(e["digest"], e.get("mediaType", ""), raw)
    raise KeyError(f"{tag!r} not in {path}/index.json")


def _read_verified(path: Path, digest: str, flat: bool = False) -> bytes:
    """A blob of an OCI layout (``blobs/<algo>/<hex>``) or, with `flat`, of a
    ``dir:`` directory (``<hex>``), checked against its digest."""
    algo, hexpart = digest.split(":", 1)
    p = path / hexpart if flat else path / "blobs" / algo / hexpart
    data = p.read_bytes()
    actual = f"{algo}:" + hashlib.new(algo, data).hexdigest()
    if actual != digest:
        raise AssertionError(f"blob {digest} in {path} has digest {actual}")
    return data


def verify_image_blobs(path: os.PathLike | str, manifest: dict, flat: bool = False) -> dict:
    """Check every blob an image manifest refers to is in the pulled
    directory (an OCI layout, or a ``dir:`` one with `flat`) with the right
    digest and size; decompress each gzip layer and return
    ``{"config": <config json>, "config_digest": …, "layer_digests": […],
    "diff_ids": [sha256 of each uncompressed layer]}``.
    """
    path = Path(path)
    cfg_desc = manifest["config"]
    cfg_raw = _read_verified(path, cfg_desc["digest"], flat)
    assert len(cfg_raw) == cfg_desc["size"], cfg_desc
    diff_ids = []
    for ld in manifest["layers"]:
        blob = _read_verified(path, ld["digest"], flat)
        assert len(blob) == ld["size"], ld
        if blob[:2] == b"\x1f\x8b":
            h = hashlib.sha256()
            with gzip.GzipFile(fileobj=io.BytesIO(blob)) as g:
                for chunk in iter(lambda: g.read(MiB), b""):
                    h.update(chunk)
            diff_ids.append("sha256:" + h.hexdigest())
        else:
            diff_ids.append(sha256_digest(blob))
    return {
        "config": json.loads(cfg_raw) if cfg_raw else {},
        "config_digest": cfg_desc["digest"],
        "layer_digests": [ld["digest"] for ld in manifest["layers"]],
        "diff_ids": diff_ids,
    }
