"""Tag lists, the catalog and the referrers API, with pagination and filters."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_twisted

from tests.api_helpers import (
    OCI_INDEX,
    assert_oci_error,
    digest_of,
    header,
    make_artifact,
    make_image,
    push_blob,
    push_image,
    put_manifest,
)

_LINK = re.compile(r'^<([^>]+)>;\s*rel="next"$')


def next_link(response) -> str | None:
    """The path of the Link rel="next" header, checked for shape; None without one."""
    link = header(response, "Link")
    if link is None:
        return None
    match = _LINK.match(link)
    assert match, link
    return match.group(1)


async def tag_image(server, name: str, tags: list[str]) -> None:
    image = make_image()
    await push_image(server, name, image, reference=tags[0])
    for tag in tags[1:]:
        response = await put_manifest(server, name, tag, image.body, image.media_type)
        assert response.code == 201


TAGS = ["v2", "latest", "1.0", "A-upper", "_under", "v10", "beta", "1.10"]


@pytest_twisted.ensureDeferred
async def test_tags_list_gives_every_tag_in_lexical_order(server):
    await tag_image(server, "team/app", TAGS)
    response = await server.request("GET", "/v2/team/app/tags/list")
    assert response.code == 200
    assert (header(response, "Content-Type") or "").startswith("application/json")
    assert await response.json() == {"name": "team/app", "tags": sorted(TAGS)}
    assert header(response, "Link") is None


@pytest_twisted.ensureDeferred
async def test_tags_list_pages_with_n_and_last_following_the_link_header(server):
    await tag_image(server, "team/app", TAGS)
    seen: list[str] = []
    path: str | None = "/v2/team/app/tags/list?n=3"
    pages = 0
    while path is not None:
        response = await server.request("GET", path)
        assert response.code == 200
        page = (await response.json())["tags"]
        assert len(page) <= 3
        seen += page
        path = next_link(response)
        if path is not None:
            query = parse_qs(urlsplit(path).query)
            assert urlsplit(path).path == "/v2/team/app/tags/list"
            assert query["n"] == ["3"] and query["last"] == [page[-1]]
        pages += 1
        assert pages < 10
    assert seen == sorted(TAGS)
    assert pages == 3


@pytest_twisted.ensureDeferred
async def test_tags_list_with_last_starts_after_it(server):
    await tag_image(server, "team/app", TAGS)
    response = await server.request("GET", "/v2/team/app/tags/list?last=beta")
    tags = (await response.json())["tags"]
    assert tags == [t for t in sorted(TAGS) if t > "beta"]
    response = await server.request("GET", "/v2/team/app/tags/list?n=2&last=beta")
    assert (await response.json())["tags"] == [t for t in sorted(TAGS) if t > "beta"][:2]


@pytest_twisted.ensureDeferred
async def test_tags_list_with_n_covering_everything_has_no_link(server):
    await tag_image(server, "team/app", TAGS)
    response = await server.request("GET", f"/v2/team/app/tags/list?n={len(TAGS)}")
    assert (await response.json())["tags"] == sorted(TAGS)
    assert header(response, "Link") is None


@pytest_twisted.ensureDeferred
async def test_tags_list_with_n_zero_is_an_empty_list(server):
    await tag_image(server, "team/app", TAGS)
    response = await server.request("GET", "/v2/team/app/tags/list?n=0")
    assert response.code == 200
    assert (await response.json())["tags"] in ([], None)


@pytest_twisted.ensureDeferred
async def test_tags_list_of_an_unknown_repository_is_404_name_unknown(server):
    response = await server.request("GET", "/v2/team/nothing/tags/list")
    await assert_oci_error(response, 404, "NAME_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_tags_list_of_a_repository_with_only_untagged_content_is_empty(server):
    await push_blob(server, "team/app")
    response = await server.request("GET", "/v2/team/app/tags/list")
    assert response.code == 200
    assert (await response.json())["tags"] in ([], None)


#: Not a whole number of ASCII digits: "²" and "١٢" (Arabic-Indic 12) are digits
#: to str.isdigit; 5000 digits are past what int() parses.
BAD_N = ["abc", "-1", "1.5", "0x10", "%C2%B2", "%D9%A1%D9%A2", "9" * 5000, "1%0A"]


@pytest.mark.parametrize("n", BAD_N, ids=lambda n: n[:10])
@pytest_twisted.ensureDeferred
async def test_tags_list_with_n_not_ascii_digits_is_400_unsupported(server, n):
    await tag_image(server, "team/app", ["v1"])
    response = await server.request("GET", f"/v2/team/app/tags/list?n={n}")
    await assert_oci_error(response, 400, "UNSUPPORTED")


@pytest_twisted.ensureDeferred
async def test_an_n_past_the_largest_page_gets_the_largest_page(server):
    await tag_image(server, "team/app", ["v1", "v2"])
    response = await server.request("GET", "/v2/team/app/tags/list?n=9223372036854775807")
    assert response.code == 200
    assert (await response.json())["tags"] == ["v1", "v2"]


@pytest_twisted.ensureDeferred
async def test_catalog_lists_repositories_in_lexical_order_and_pages(server):
    names = ["zeta/app", "alpha", "team/app", "team/app/api", "beta-x"]
    for name in names:
        await push_image(server, name, make_image())
    response = await server.request("GET", "/v2/_catalog")
    assert response.code == 200
    assert (await response.json())["repositories"] == sorted(names)
    seen: list[str] = []
    path: str | None = "/v2/_catalog?n=2"
    pages = 0
    while path is not None:
        response = await server.request("GET", path)
        page = (await response.json())["repositories"]
        assert len(page) <= 2
        seen += page
        path = next_link(response)
        if path is not None:
            assert urlsplit(path).path == "/v2/_catalog"
            assert parse_qs(urlsplit(path).query) == {"n": ["2"], "last": [page[-1]]}
        pages += 1
        assert pages < 10
    assert seen == sorted(names)
    assert pages == 3


@pytest_twisted.ensureDeferred
async def test_catalog_of_an_empty_registry_is_an_empty_list(server):
    response = await server.request("GET", "/v2/_catalog")
    assert response.code == 200
    assert (await response.json())["repositories"] in ([], None)


@pytest_twisted.ensureDeferred
async def test_catalog_with_n_zero_is_an_empty_list(server):
    await push_image(server, "team/app", make_image())
    response = await server.request("GET", "/v2/_catalog?n=0")
    assert response.code == 200
    assert (await response.json())["repositories"] in ([], None)


@pytest.mark.parametrize("n", BAD_N, ids=lambda n: n[:10])
@pytest_twisted.ensureDeferred
async def test_catalog_with_n_not_ascii_digits_is_400_unsupported(server, n):
    response = await server.request("GET", f"/v2/_catalog?n={n}")
    await assert_oci_error(response, 400, "UNSUPPORTED")


# Referrers


async def push_referrer(server, name, artifact, reference=None):
    for data in artifact.blobs.values():
        await push_blob(server, name, data)
    response = await put_manifest(
        server, name, reference or artifact.digest, artifact.body, artifact.media_type
    )
    assert response.code == 201
    return artifact


@pytest_twisted.ensureDeferred
async def test_referrers_lists_artifacts_whose_subject_is_the_digest(server):
    image = make_image()
    await push_image(server, "team/app", image)
    signature = await push_referrer(
        server, "team/app", make_artifact(image, "application/vnd.example.sig",
                                          annotations={"org.example": "yes"})
    )
    sbom = await push_referrer(server, "team/app", make_artifact(image, "application/vnd.x.sbom"))
    await push_referrer(server, "team/app", make_artifact(make_image(), "application/vnd.x.sbom"))
    response = await server.request("GET", f"/v2/team/app/referrers/{image.digest}")
    assert response.code == 200
    assert header(response, "Content-Type") == OCI_INDEX
    index = await response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert set(by_digest) == {signature.digest, sbom.digest}
    assert by_digest[signature.digest] == {
        "mediaType": signature.media_type,
        "digest": signature.digest,
        "size": signature.size,
        "artifactType": "application/vnd.example.sig",
        "annotations": {"org.example": "yes"},
    }
    assert by_digest[sbom.digest]["artifactType"] == "application/vnd.x.sbom"
    assert header(response, "OCI-Filters-Applied") is None


@pytest_twisted.ensureDeferred
async def test_referrers_artifact_type_filter_is_applied_and_announced(server):
    image = make_image()
    await push_image(server, "team/app", image)
    await push_referrer(server, "team/app", make_artifact(image, "application/vnd.example.sig"))
    sbom = await push_referrer(server, "team/app", make_artifact(image, "application/vnd.x.sbom"))
    response = await server.request(
        "GET", f"/v2/team/app/referrers/{image.digest}?artifactType=application/vnd.x.sbom"
    )
    assert response.code == 200
    assert header(response, "OCI-Filters-Applied") == "artifactType"
    index = await response.json()
    assert [d["digest"] for d in index["manifests"]] == [sbom.digest]


@pytest_twisted.ensureDeferred
async def test_referrers_reports_config_media_type_when_artifact_type_is_absent(server):
    image = make_image()
    await push_image(server, "team/app", image)
    referrer = make_image(subject=image.descriptor())
    referrer.document["config"]["mediaType"] = "application/vnd.example.config+json"
    referrer = type(referrer)(referrer.document, referrer.blobs)
    await push_referrer(server, "team/app", referrer)
    response = await server.request("GET", f"/v2/team/app/referrers/{image.digest}")
    manifests = (await response.json())["manifests"]
    assert [(d["digest"], d.get("artifactType")) for d in manifests] == [
        (referrer.digest, "application/vnd.example.config+json")
    ]


@pytest_twisted.ensureDeferred
async def test_referrers_of_an_unknown_digest_is_an_empty_index(server):
    await push_image(server, "team/app", make_image())
    for name in ("team/app", "team/unknown"):
        response = await server.request("GET", f"/v2/{name}/referrers/{digest_of(b'nothing')}")
        assert response.code == 200
        assert header(response, "Content-Type") == OCI_INDEX
        index = await response.json()
        assert index == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


@pytest_twisted.ensureDeferred
async def test_referrers_of_a_deleted_artifact_no_longer_lists_it(server):
    image = make_image()
    await push_image(server, "team/app", image)
    artifact = await push_referrer(server, "team/app", make_artifact(image))
    response = await server.request("DELETE", f"/v2/team/app/manifests/{artifact.digest}")
    assert response.code == 202
    response = await server.request("GET", f"/v2/team/app/referrers/{image.digest}")
    assert (await response.json())["manifests"] == []


@pytest_twisted.ensureDeferred
async def test_referrers_in_another_repository_are_not_listed(server):
    image = make_image()
    await push_image(server, "team/a", image)
    await push_image(server, "team/b", image)
    await push_referrer(server, "team/a", make_artifact(image))
    response = await server.request("GET", f"/v2/team/b/referrers/{image.digest}")
    assert (await response.json())["manifests"] == []


@pytest_twisted.ensureDeferred
async def test_referrers_with_an_invalid_digest_is_400_digest_invalid(server):
    response = await server.request("GET", "/v2/team/app/referrers/sha256:nothex")
    await assert_oci_error(response, 400, "DIGEST_INVALID")
