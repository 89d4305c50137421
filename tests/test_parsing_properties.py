"""The pure parsers of request input, over generated input: manifests, digests and page sizes
either parse or raise the registry error the API answers with, never anything else."""

from __future__ import annotations

import hashlib
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ocireg.api.errors import WIRE
from ocireg.api.params import whole_number
from ocireg.api.registry import MAX_PAGE, page_size
from ocireg.digest import Digest
from ocireg.errors import DIGEST_INVALID, MANIFEST_INVALID, UNSUPPORTED, RegistryError
from ocireg.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)

#: Any text, lone surrogates too: JSON's "\ud800" escapes decode to them.
any_text = st.text() | st.text(st.characters(exclude_categories=()), max_size=4)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)


def _digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


descriptors = st.builds(
    lambda media_type, data, size: {"mediaType": media_type, "digest": _digest_of(data),
                                    "size": size},
    st.sampled_from(["application/vnd.oci.image.layer.v1.tar+gzip",
                     "application/vnd.oci.image.config.v1+json"]),
    st.binary(max_size=8),
    st.integers(min_value=0, max_value=2**40),
)

images = st.builds(
    lambda media_type, config, layers: {"schemaVersion": 2, "mediaType": media_type,
                                        "config": config, "layers": layers},
    st.sampled_from([OCI_MANIFEST, DOCKER_MANIFEST]),
    descriptors,
    st.lists(descriptors, max_size=4),
)

indexes = st.builds(
    lambda media_type, children: {"schemaVersion": 2, "mediaType": media_type,
                                  "manifests": children},
    st.sampled_from([OCI_INDEX, DOCKER_LIST]),
    st.lists(descriptors, max_size=4),
)


def _replace(document: dict, path: list, value: object) -> dict:
    """`document` with the value at `path` (keys and list indexes) replaced by `value`."""
    document = json.loads(json.dumps(document))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


@st.composite
def mutated(draw) -> dict:
    """A valid manifest with one field (or one of a descriptor's) replaced by any JSON value."""
    document = draw(images | indexes)
    paths: list[list] = [[key] for key in ("schemaVersion", "mediaType", "config", "layers",
                                           "manifests", "subject", "annotations",
                                           "artifactType")]
    for key in ("layers", "manifests"):
        for i in range(len(document.get(key, []))):
            paths += [[key, i, field] for field in ("mediaType", "digest", "size")]
    if "config" in document:
        paths += [["config", field] for field in ("mediaType", "digest", "size")]
    return _replace(document, draw(st.sampled_from(paths)), draw(json_values))


def _nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | mutated().map(lambda d: json.dumps(d).encode())
    | st.builds(_nested, st.integers(min_value=1, max_value=50_000),
                st.sampled_from(["list", "object"]))
)


_EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": _digest_of(b"{}"),
          "size": 2}


@settings(max_examples=500, deadline=None)
@given(bodies, st.text(max_size=60))
@example(json.dumps({"schemaVersion": 2, "config": _EMPTY, "layers": [],
                     "artifactType": "\ud800"}).encode(), "")
@example(json.dumps({"schemaVersion": 2, "config": _EMPTY, "layers": [],
                     "annotations": {"k": "\udfff"}}).encode(), "")
def test_parse_manifest_raises_nothing_but_manifest_invalid(body, content_type):
    try:
        manifest = parse_manifest(body, content_type)
    except RegistryError as e:
        assert e.code == MANIFEST_INVALID, e
        assert WIRE[e.code].status == 400
        return
    # What parsed is whole: a digest of the body, and text any store can keep.
    assert manifest.digest == Digest.of(body)
    for text in (manifest.media_type, manifest.artifact_type or "",
                 *(manifest.annotations or {}).keys(), *(manifest.annotations or {}).values()):
        text.encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(images | indexes)
def test_parse_manifest_accepts_every_well_formed_manifest_and_finds_its_references(document):
    body = json.dumps(document).encode()
    manifest = parse_manifest(body, document["mediaType"])
    assert manifest.media_type == document["mediaType"]
    if "config" in document:
        wanted = [document["config"]["digest"]] + [d["digest"] for d in document["layers"]]
        assert [str(d) for d in manifest.blobs] == list(dict.fromkeys(wanted))
        assert manifest.manifests == ()
    else:
        wanted = [d["digest"] for d in document["manifests"]]
        assert [str(d) for d in manifest.manifests] == list(dict.fromkeys(wanted))
        assert manifest.blobs == ()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"\A[a-z0-9]+:[a-zA-Z0-9=_-]{0,140}\Z"))
def test_digest_parse_round_trips_or_raises_digest_invalid(text):
    try:
        digest = Digest.parse(text)
    except RegistryError as e:
        assert e.code == DIGEST_INVALID, e
        return
    assert str(digest) == text
    assert digest.algorithm in ("sha256", "sha512")


@given(st.binary(max_size=64), st.sampled_from(["sha256", "sha512"]))
def test_digest_of_any_bytes_parses_back(data, algorithm):
    digest = Digest.of(data, algorithm)
    assert Digest.parse(str(digest)) == digest


@settings(max_examples=500)
@given(st.text(max_size=30) | st.text("0123456789", max_size=5000) | st.none())
def test_page_size_is_a_bounded_count_or_unsupported(n):
    try:
        size = page_size(n)
    except RegistryError as e:
        assert e.code == UNSUPPORTED and WIRE[e.code].status == 400
        assert n is not None
        assert not (n.isascii() and n.isdigit() and len(n) <= 19)
        return
    if n is None:
        assert size is None
    else:
        assert n.isascii() and n.isdigit()
        assert size == min(int(n), MAX_PAGE)


@given(st.text(max_size=30), st.integers(min_value=1, max_value=30))
def test_whole_number_takes_only_ascii_digits_up_to_its_bound(text, max_digits):
    number = whole_number(text, max_digits)
    if text.isascii() and text.isdigit() and len(text) <= max_digits:
        assert number == int(text)
    else:
        assert number is None
