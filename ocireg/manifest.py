"""Manifest parsing: media types, validation and references. Pure, no I/O."""

from __future__ import annotations

import json

import attrs

from ocireg.digest import Digest
from ocireg.errors import MANIFEST_INVALID, RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_MEDIA_TYPES = IMAGE_MANIFESTS + INDEXES

#: Largest manifest we store, in bytes.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

#: Content types that say nothing about which manifest a body is.
_GENERIC_CONTENT_TYPES = ("", "application/json", "application/octet-stream", "text/plain")

#: Layers that registries are not asked to hold (Windows base layers and the like).
_NON_DISTRIBUTABLE = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)


@attrs.frozen
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = attrs.field(default=None, eq=False, hash=False)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@attrs.frozen
class Manifest:
    """A parsed, validated manifest and the content it references."""

    digest: Digest
    media_type: str
    body: bytes = attrs.field(repr=False)
    #: Blobs it needs: config and layers.
    blobs: tuple[Digest, ...]
    #: Manifests it needs: the children of an index.
    manifests: tuple[Digest, ...]
    subject: Digest | None
    #: What the referrers API reports: `artifactType`, else the config's type.
    artifact_type: str | None
    annotations: dict[str, str] | None = attrs.field(eq=False, hash=False)
    #: (digest, declared size) of each descriptor behind `blobs` and `manifests`:
    #: a promotion holds them against what is stored.
    sizes: tuple[tuple[Digest, int], ...] = ()

    @property
    def size(self) -> int:
        return len(self.body)

    def descriptor(self) -> Descriptor:
        return Descriptor(
            self.media_type, self.digest, self.size, self.artifact_type, self.annotations
        )


def _is_unicode(text: str) -> bool:
    """Is `text` free of lone surrogates (which JSON's `\\ud800` escapes decode to)?

    Neither database can store one: the text the registry keeps must be checked.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _invalid(message: str, detail: object = None) -> RegistryError:
    return RegistryError(MANIFEST_INVALID, message, detail)


def _descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    try:
        parsed = Digest.parse(digest)
    except RegistryError as e:
        raise _invalid(f"{where}.digest: {e.message}") from None
    artifact_type = value.get("artifactType")
    annotations = value.get("annotations")
    return Descriptor(
        media_type,
        parsed,
        size,
        artifact_type if isinstance(artifact_type, str) else None,
        annotations if isinstance(annotations, dict) else None,
    )


def _media_type(document: dict, content_type: str) -> str:
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    sent = content_type.split(";", 1)[0].strip().lower()
    if sent in _GENERIC_CONTENT_TYPES:
        sent = ""
    if declared and sent and declared != sent:
        raise _invalid(
            f"Content-Type {sent!r} does not match the manifest's mediaType {declared!r}",
            {"contentType": sent, "mediaType": declared},
        )
    media_type = declared or sent
    if not media_type:
        # OCI lets mediaType be omitted; the shape then says which it is.
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    return media_type


def parse_manifest(body: bytes, content_type: str = "") -> Manifest:
    """Validate `body` as a manifest of a type we serve, and find what it references."""
    if len(body) > MAX_MANIFEST_SIZE:
        raise _invalid(f"manifest is larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _invalid(f"manifest is not valid JSON: {e}") from None
    except RecursionError:
        # json nests by recursion: a body of a few thousand `[` runs out of stack.
        raise _invalid("manifest is nested too deeply") from None
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    schema_version = document.get("schemaVersion")
    media_type = _media_type(document, content_type)
    if schema_version == 1 or media_type in DOCKER_SCHEMA1:
        raise _invalid(
            "Docker schema1 manifests are not supported; push with a current client "
            "(schema2 or OCI)",
            {"mediaType": media_type},
        )
    if schema_version != 2:
        raise _invalid("schemaVersion must be 2")
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise _invalid(
            f"unsupported manifest media type {media_type!r}",
            {"mediaType": media_type, "supported": list(MANIFEST_MEDIA_TYPES)},
        )

    blobs: list[Digest] = []
    children: list[Digest] = []
    sizes: list[tuple[Digest, int]] = []
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")

    if media_type in IMAGE_MANIFESTS:
        if "manifests" in document:
            raise _invalid("an image manifest has no 'manifests'")
        config = _descriptor(document.get("config"), "config")
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise _invalid("layers must be a list")
        blobs.append(config.digest)
        sizes.append((config.digest, config.size))
        for i, layer in enumerate(layers):
            descriptor = _descriptor(layer, f"layers[{i}]")
            if descriptor.media_type in _NON_DISTRIBUTABLE:
                continue
            blobs.append(descriptor.digest)
            sizes.append((descriptor.digest, descriptor.size))
        if artifact_type is None and config.media_type != OCI_EMPTY:
            artifact_type = config.media_type
    else:
        if "layers" in document or "config" in document:
            raise _invalid("an index has no 'config' or 'layers'")
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("manifests must be a list")
        for i, entry in enumerate(entries):
            descriptor = _descriptor(entry, f"manifests[{i}]")
            children.append(descriptor.digest)
            sizes.append((descriptor.digest, descriptor.size))

    subject = None
    if document.get("subject") is not None:
        subject = _descriptor(document["subject"], "subject").digest
    annotations = document.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict)
        or not all(isinstance(v, str) for v in annotations.values())
    ):
        raise _invalid("annotations must map strings to strings")
    kept = [artifact_type or "", *(annotations or {}).keys(), *(annotations or {}).values()]
    if not all(_is_unicode(text) for text in kept):
        raise _invalid("artifactType and annotations must be Unicode text: a \\u escape "
                       "decodes to a lone surrogate")

    return Manifest(
        digest=Digest.of(body),
        media_type=media_type,
        body=body,
        blobs=tuple(dict.fromkeys(blobs)),
        manifests=tuple(dict.fromkeys(children)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
        sizes=tuple(dict.fromkeys(sizes)),
    )
