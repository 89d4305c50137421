"""Repository versions as pushes make them: one tag write, one version; nothing half-done.

Includes the race design.md is built around: a blob a client saw with HEAD is
gone by the time its tag write arrives.
"""

from __future__ import annotations

import pytest_twisted

from ocireg.digest import Digest
from tests.api_helpers import (
    assert_oci_error,
    digest_of,
    latest,
    make_artifact,
    make_image,
    make_index,
    push_blob,
    push_image,
    put_manifest,
    version_numbers,
)


async def content(server, name, number=None):
    return await server.registry.version_content(name, number)


@pytest_twisted.ensureDeferred
async def test_a_tag_write_makes_exactly_one_new_version_holding_the_closure(server):
    image = make_image(layers=3)
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    before = await version_numbers(server, "team/app")
    response = await put_manifest(server, "team/app", "v1", image.body, image.media_type)
    assert response.code == 201
    after = await version_numbers(server, "team/app")
    assert after == before + [before[-1] + 1]
    held = await content(server, "team/app")
    assert held["tag"] == {"v1": image.digest}
    assert set(held["manifest"]) == {image.digest}
    assert set(held["blob"]) == set(image.blobs)


@pytest_twisted.ensureDeferred
async def test_a_new_repository_starts_at_an_empty_version_zero(server):
    await push_image(server, "team/app", make_image())
    assert (await version_numbers(server, "team/app"))[0] == 0
    assert await content(server, "team/app", 0) == {"tag": {}, "manifest": {}, "blob": {}}


@pytest_twisted.ensureDeferred
async def test_pushing_blobs_alone_makes_no_version(server):
    await push_blob(server, "team/app")
    await push_blob(server, "team/app")
    assert await version_numbers(server, "team/app") == [0]


@pytest_twisted.ensureDeferred
async def test_re_pushing_the_same_tag_and_content_makes_no_new_version(server):
    image = make_image()
    await push_image(server, "team/app", image, reference="v1")
    before = await version_numbers(server, "team/app")
    await push_image(server, "team/app", image, reference="v1")
    assert await version_numbers(server, "team/app") == before


@pytest_twisted.ensureDeferred
async def test_a_second_tag_on_the_same_manifest_makes_one_version_adding_only_the_tag(server):
    image = make_image()
    await push_image(server, "team/app", image, reference="v1")
    first = await latest(server, "team/app")
    before = await version_numbers(server, "team/app")
    response = await put_manifest(server, "team/app", "stable", image.body, image.media_type)
    assert response.code == 201
    assert await version_numbers(server, "team/app") == before + [before[-1] + 1]
    second = await latest(server, "team/app")
    assert second["tag"] == {"v1": image.digest, "stable": image.digest}
    assert second["manifest"] == first["manifest"]
    assert second["blob"] == first["blob"]


@pytest_twisted.ensureDeferred
async def test_push_by_digest_only_stages_but_is_pullable_by_digest_at_once(server):
    image = make_image()
    await push_image(server, "team/app", image, reference=None)
    assert await version_numbers(server, "team/app") == [0]
    response = await server.request("GET", f"/v2/team/app/manifests/{image.digest}")
    assert response.code == 200
    assert await response.content() == image.body


@pytest_twisted.ensureDeferred
async def test_tagging_a_staged_manifest_promotes_it_in_one_version(server):
    image = make_image()
    await push_image(server, "team/app", image, reference=None)
    response = await put_manifest(server, "team/app", "v1", image.body, image.media_type)
    assert response.code == 201
    assert await version_numbers(server, "team/app") == [0, 1]
    held = await latest(server, "team/app")
    assert held["tag"] == {"v1": image.digest}
    assert set(held["blob"]) == set(image.blobs)


@pytest_twisted.ensureDeferred
async def test_index_tag_write_promotes_children_and_their_blobs_in_one_version(server):
    children = [make_image(), make_image()]
    for child in children:
        await push_image(server, "team/app", child, reference=None)
    index = make_index(children)
    assert await version_numbers(server, "team/app") == [0]
    response = await put_manifest(server, "team/app", "multi", index.body, index.media_type)
    assert response.code == 201
    assert await version_numbers(server, "team/app") == [0, 1]
    held = await latest(server, "team/app")
    assert set(held["manifest"]) == {index.digest, *(c.digest for c in children)}
    assert set(held["blob"]) == {d for c in children for d in c.blobs}
    assert held["tag"] == {"multi": index.digest}


@pytest_twisted.ensureDeferred
async def test_tag_write_missing_a_blob_is_manifest_blob_unknown_and_changes_nothing(server):
    await push_image(server, "team/app", make_image(), reference="old")
    image = make_image(layers=2)
    skipped = image.document["layers"][1]["digest"]
    for digest, data in image.blobs.items():
        if digest != skipped:
            await push_blob(server, "team/app", data)
    before_versions = await version_numbers(server, "team/app")
    before = await latest(server, "team/app")
    response = await server.request(
        "PUT", "/v2/team/app/manifests/v1", data=image.body,
        headers={"Content-Type": image.media_type},
    )
    await assert_oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert await version_numbers(server, "team/app") == before_versions
    assert await latest(server, "team/app") == before
    for reference in ("v1", image.digest):
        response = await server.request("GET", f"/v2/team/app/manifests/{reference}")
        await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_tag_write_with_a_blob_only_in_another_repository_is_refused(server):
    image = make_image()
    await push_image(server, "team/other", image)
    response = await server.request(
        "PUT", "/v2/team/app/manifests/v1", data=image.body,
        headers={"Content-Type": image.media_type},
    )
    await assert_oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert await version_numbers(server, "team/app") in ([], [0])


@pytest_twisted.ensureDeferred
async def test_index_whose_child_was_never_pushed_is_refused_and_changes_nothing(server):
    pushed, never = make_image(), make_image()
    await push_image(server, "team/app", pushed, reference="base")
    for data in never.blobs.values():
        await push_blob(server, "team/app", data)
    before_versions = await version_numbers(server, "team/app")
    before = await latest(server, "team/app")
    index = make_index([pushed, never])
    response = await server.request(
        "PUT", "/v2/team/app/manifests/multi", data=index.body,
        headers={"Content-Type": index.media_type},
    )
    await assert_oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert await version_numbers(server, "team/app") == before_versions
    assert await latest(server, "team/app") == before
    response = await server.request("GET", "/v2/team/app/manifests/multi")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_delete_of_a_tag_makes_a_new_version_without_the_tag(server):
    image = make_image()
    await push_image(server, "team/app", image, reference="v1")
    await put_manifest(server, "team/app", "v2", image.body, image.media_type)
    before = await version_numbers(server, "team/app")
    response = await server.request("DELETE", "/v2/team/app/manifests/v1")
    assert response.code == 202
    after = await version_numbers(server, "team/app")
    assert after == before + [before[-1] + 1]
    held = await content(server, "team/app", after[-1])
    assert held["tag"] == {"v2": image.digest}
    assert image.digest in held["manifest"]
    previous = await content(server, "team/app", before[-1])
    assert previous["tag"] == {"v1": image.digest, "v2": image.digest}


@pytest_twisted.ensureDeferred
async def test_delete_by_digest_makes_a_new_version_without_it_and_its_tags(server):
    keep, drop = make_image(), make_image()
    await push_image(server, "team/app", keep, reference="keep")
    await push_image(server, "team/app", drop, reference="a")
    await put_manifest(server, "team/app", "b", drop.body, drop.media_type)
    before = await version_numbers(server, "team/app")
    response = await server.request("DELETE", f"/v2/team/app/manifests/{drop.digest}")
    assert response.code == 202
    after = await version_numbers(server, "team/app")
    assert after == before + [before[-1] + 1]
    held = await content(server, "team/app", after[-1])
    assert held["tag"] == {"keep": keep.digest}
    assert set(held["manifest"]) == {keep.digest}
    assert set(held["blob"]) == set(keep.blobs)
    old = await content(server, "team/app", before[-1])
    assert old["tag"] == {"keep": keep.digest, "a": drop.digest, "b": drop.digest}


@pytest_twisted.ensureDeferred
async def test_delete_of_a_manifest_keeps_blobs_another_manifest_shares(server):
    shared = b"shared layer " * 50
    first = make_image()
    second = make_image()
    for image in (first, second):
        image.document["layers"].append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": digest_of(shared), "size": len(shared)}
        )
        image.blobs[digest_of(shared)] = shared
    first, second = (type(i)(i.document, i.blobs) for i in (first, second))
    await push_image(server, "team/app", first, reference="one")
    await push_image(server, "team/app", second, reference="two")
    response = await server.request("DELETE", f"/v2/team/app/manifests/{first.digest}")
    assert response.code == 202
    held = await latest(server, "team/app")
    assert digest_of(shared) in held["blob"]
    head = await server.request("HEAD", f"/v2/team/app/blobs/{digest_of(shared)}")
    assert head.code == 200


@pytest_twisted.ensureDeferred
async def test_moving_a_tag_makes_a_version_that_swaps_the_tag_unit(server):
    old, new = make_image(), make_image()
    await push_image(server, "team/app", old, reference="latest")
    before = await version_numbers(server, "team/app")
    await push_image(server, "team/app", new, reference="latest")
    after = await version_numbers(server, "team/app")
    assert after == before + [before[-1] + 1]
    previous = await content(server, "team/app", before[-1])
    current = await content(server, "team/app", after[-1])
    assert previous["tag"] == {"latest": old.digest}
    assert current["tag"] == {"latest": new.digest}
    assert set(current["manifest"]) == {old.digest, new.digest}
    response = await server.request("GET", "/v2/team/app/manifests/latest")
    assert await response.content() == new.body


@pytest_twisted.ensureDeferred
async def test_failed_delete_makes_no_version(server):
    await push_image(server, "team/app", make_image(), reference="v1")
    before = await version_numbers(server, "team/app")
    response = await server.request("DELETE", "/v2/team/app/manifests/nope")
    assert response.code == 404
    assert await version_numbers(server, "team/app") == before


@pytest_twisted.ensureDeferred
async def test_manifest_with_subject_pushed_by_digest_is_promoted_at_once(server):
    image = make_image()
    await push_image(server, "team/app", image)
    before = await version_numbers(server, "team/app")
    artifact = make_artifact(image)
    for data in artifact.blobs.values():
        await push_blob(server, "team/app", data)
    response = await put_manifest(
        server, "team/app", artifact.digest, artifact.body, artifact.media_type
    )
    assert response.code == 201
    after = await version_numbers(server, "team/app")
    assert after == before + [before[-1] + 1]
    held = await latest(server, "team/app")
    assert artifact.digest in held["manifest"]
    assert set(artifact.blobs) <= set(held["blob"])


@pytest_twisted.ensureDeferred
async def test_manifest_with_subject_missing_a_blob_is_refused_and_changes_nothing(server):
    image = make_image()
    await push_image(server, "team/app", image)
    before = await version_numbers(server, "team/app")
    artifact = make_artifact(image)
    response = await server.request(
        "PUT", f"/v2/team/app/manifests/{artifact.digest}", data=artifact.body,
        headers={"Content-Type": artifact.media_type},
    )
    await assert_oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert await version_numbers(server, "team/app") == before


@pytest_twisted.ensureDeferred
async def test_two_repositories_keep_separate_version_histories(server):
    await push_image(server, "team/a", make_image(), reference="v1")
    await push_image(server, "team/a", make_image(), reference="v2")
    await push_image(server, "team/b", make_image(), reference="v1")
    assert await version_numbers(server, "team/a") == [0, 1, 2]
    assert await version_numbers(server, "team/b") == [0, 1]


# The race


@pytest_twisted.ensureDeferred
async def test_blob_gone_between_head_and_tag_write_is_refused_then_the_retry_succeeds(server):
    name = "team/app"
    old = make_image(layers=1)
    await push_image(server, name, old, reference="old")
    layer = old.document["layers"][0]["digest"]
    config = old.document["config"]["digest"]

    # A client pushing a new image that reuses the layer HEADs it, sees it, skips it.
    new = make_image(layers=0)
    new.document["layers"] = old.document["layers"]
    new.blobs[layer] = old.blobs[layer]
    new = type(new)(new.document, new.blobs)
    head = await server.request("HEAD", f"/v2/{name}/blobs/{layer}")
    assert head.code == 200
    await push_blob(server, name, new.blobs[new.document["config"]["digest"]])

    # Meanwhile the manifest that held the layer is deleted and the layer collected.
    response = await server.request("DELETE", f"/v2/{name}/manifests/{old.digest}")
    assert response.code == 202
    await server.registry.blobs.delete_blob(Digest.parse(layer))
    await server.registry.blobs.delete_blob(Digest.parse(config))
    before_versions = await version_numbers(server, name)
    before = await latest(server, name)

    response = await server.request(
        "PUT", f"/v2/{name}/manifests/new", data=new.body,
        headers={"Content-Type": new.media_type},
    )
    await assert_oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert await version_numbers(server, name) == before_versions
    assert await latest(server, name) == before

    # The client pushes again: HEAD says the layer is missing, it uploads it, tags.
    head = await server.request("HEAD", f"/v2/{name}/blobs/{layer}")
    assert head.code == 404
    await push_blob(server, name, new.blobs[layer])
    response = await put_manifest(server, name, "new", new.body, new.media_type)
    assert response.code == 201
    assert await version_numbers(server, name) == before_versions + [before_versions[-1] + 1]
    held = await latest(server, name)
    assert held["tag"] == {"new": new.digest}
    assert set(held["blob"]) == set(new.blobs)
    get = await server.request("GET", f"/v2/{name}/blobs/{layer}")
    assert await get.content() == new.blobs[layer]


@pytest_twisted.ensureDeferred
async def test_staged_blob_whose_bytes_vanished_fails_the_tag_write_until_re_pushed(server):
    name = "team/app"
    image = make_image(layers=1)
    for data in image.blobs.values():
        await push_blob(server, name, data)
    layer = image.document["layers"][0]["digest"]
    await server.registry.blobs.delete_blob(Digest.parse(layer))
    response = await server.request(
        "PUT", f"/v2/{name}/manifests/v1", data=image.body,
        headers={"Content-Type": image.media_type},
    )
    await assert_oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert await version_numbers(server, name) == [0]
    # HEAD stops claiming the blob, so a client's retry uploads it again.
    head = await server.request("HEAD", f"/v2/{name}/blobs/{layer}")
    assert head.code == 404
    await push_blob(server, name, image.blobs[layer])
    response = await put_manifest(server, name, "v1", image.body, image.media_type)
    assert response.code == 201
    assert await version_numbers(server, name) == [0, 1]
    get = await server.request("GET", f"/v2/{name}/blobs/{layer}")
    assert await get.content() == image.blobs[layer]


@pytest_twisted.ensureDeferred
async def test_failed_tag_write_leaves_another_push_staging_untouched(server):
    name = "team/app"
    ours, theirs = make_image(), make_image(layers=2)
    for data in theirs.blobs.values():
        await push_blob(server, name, data)
    response = await server.request(
        "PUT", f"/v2/{name}/manifests/ours", data=ours.body,
        headers={"Content-Type": ours.media_type},
    )
    assert response.code == 400
    response = await put_manifest(server, name, "theirs", theirs.body, theirs.media_type)
    assert response.code == 201
    held = await latest(server, name)
    assert held["tag"] == {"theirs": theirs.digest}
    assert set(held["blob"]) == set(theirs.blobs)


@pytest_twisted.ensureDeferred
async def test_tag_write_promotes_only_its_own_closure_not_other_staged_blobs(server):
    name = "team/app"
    image = make_image()
    stray = await push_blob(server, name)
    await push_image(server, name, image, reference="v1")
    held = await latest(server, name)
    assert stray not in held["blob"]
    assert set(held["blob"]) == set(image.blobs)
    head = await server.request("HEAD", f"/v2/{name}/blobs/{stray}")
    assert head.code == 200  # still staged, still visible to its own push
