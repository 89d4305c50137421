"""The management API (/api/v1/): repositories, versions, diff, rollback, modify,
version deletion, retention, staging and distributions, through HTTP.
"""

from __future__ import annotations

import json

import pytest_twisted

from tests.api_helpers import assert_oci_error, make_image, make_index, push_blob, push_image


async def call(server, method: str, path: str, body: object = None) -> tuple[int, object]:
    """A management API call; its status and decoded JSON body (None when empty)."""
    kwargs = {}
    if body is not None:
        kwargs["data"] = json.dumps(body).encode()
        kwargs["headers"] = {"Content-Type": "application/json"}
    response = await server.request(method, "/api/v1" + path, **kwargs)
    raw = await response.content()
    if raw:
        assert response.headers.getRawHeaders("content-type") == ["application/json"], raw
    return response.code, json.loads(raw) if raw else None


async def ok(server, method: str, path: str, body: object = None, status: int = 200) -> dict:
    code, document = await call(server, method, path, body)
    assert code == status, document
    return document


async def error(server, method, path, body=None, status=400, code=None, field=None) -> dict:
    got, document = await call(server, method, path, body)
    assert got == status, document
    assert set(document) == {"error"}, document
    assert isinstance(document["error"]["message"], str) and document["error"]["message"]
    if code is not None:
        assert document["error"]["code"] == code, document
    if field is not None:
        assert document["error"].get("field") == field, document
    return document["error"]


async def two_pushes(server, name="team/app"):
    """v1 tagged 1.0, then v2 tagged 2.0 and latest moved from v1 to v2: versions 1..4."""
    first, second = make_image(layers=2), make_image(layers=2)
    await push_image(server, name, first, "1.0")
    await push_image(server, name, first, "latest")
    await push_image(server, name, second, "2.0")
    await push_image(server, name, second, "latest")
    return first, second


async def pulled_digest(server, name: str, reference: str) -> str | None:
    response = await server.request("GET", f"/v2/{name}/manifests/{reference}")
    await response.content()
    if response.code != 200:
        return None
    return response.headers.getRawHeaders("docker-content-digest")[0]


# Repositories


@pytest_twisted.ensureDeferred
async def test_repository_show_counts_tags_manifests_and_sizes(server):
    first, second = await two_pushes(server)
    repo = await ok(server, "GET", "/repositories/team/app")
    assert repo["latest_version"] == 4
    assert (repo["tags"], repo["manifests"]) == (3, 2)
    sizes = sum(len(d) for i in (first, second) for d in i.blobs.values())
    assert repo["size"] == repo["unique_size"] == sizes
    assert repo["distributions"] == ["team/app"]
    # Sharing a blob with another repository takes it out of the unique size.
    await push_image(server, "team/other", first, "x")
    repo = await ok(server, "GET", "/repositories/team/app")
    assert repo["unique_size"] == sum(len(d) for d in second.blobs.values())


@pytest_twisted.ensureDeferred
async def test_repository_list_pages_by_name_with_a_prefix_filter(server):
    for name in ("a/one", "a/two", "a/three", "b/one"):
        await ok(server, "POST", "/repositories/", {"name": name}, status=201)
    page = await ok(server, "GET", "/repositories/?prefix=a/&limit=2")
    assert [r["name"] for r in page["repositories"]] == ["a/one", "a/three"]
    assert page["next"] == "a/three"
    page = await ok(server, "GET", f"/repositories/?prefix=a/&limit=2&after={page['next']}")
    assert [r["name"] for r in page["repositories"]] == ["a/two"]
    assert page["next"] is None


@pytest_twisted.ensureDeferred
async def test_creating_an_existing_repository_is_a_conflict_and_bad_names_name_the_field(server):
    await ok(server, "POST", "/repositories/", {"name": "team/app"}, status=201)
    await error(server, "POST", "/repositories/", {"name": "team/app"}, 409, "CONFLICT", "name")
    await error(server, "POST", "/repositories/", {"name": "Team/App"}, 400, "NAME_INVALID",
                "name")
    await error(server, "POST", "/repositories/", {"name": 3}, 400, "INVALID", "name")
    await error(server, "POST", "/repositories/", {}, 400, "INVALID", "name")
    await error(server, "POST", "/repositories/", {"name": "x", "retain_versions": 0}, 400,
                "INVALID", "retain_versions")
    got, document = await call(server, "POST", "/repositories/")
    assert got == 400


@pytest_twisted.ensureDeferred
async def test_deleting_a_repository_removes_its_distributions_but_not_shared_content(server):
    image = make_image()
    await push_image(server, "team/app", image, "1")
    await push_image(server, "team/keep", image, "1")
    await ok(server, "DELETE", "/repositories/team/app", status=204)
    await error(server, "GET", "/repositories/team/app", status=404, code="NAME_UNKNOWN")
    await error(server, "GET", "/distributions/team/app", status=404)
    assert await pulled_digest(server, "team/app", "1") is None
    assert await pulled_digest(server, "team/keep", "1") == image.digest
    # A push to the name again starts afresh at version 1.
    await push_image(server, "team/app", image, "1")
    assert (await ok(server, "GET", "/repositories/team/app"))["latest_version"] == 1


# Versions


@pytest_twisted.ensureDeferred
async def test_version_list_counts_what_each_version_added_removed_and_holds(server):
    await two_pushes(server)
    versions = (await ok(server, "GET", "/repositories/team/app/versions/"))["versions"]
    assert [v["reason"] for v in versions] == [
        "created", "push tag 1.0", "push tag latest", "push tag 2.0", "push tag latest"]
    assert versions[1]["added"] == {"tags": 1, "manifests": 1, "blobs": 3}
    assert versions[4]["added"] == {"tags": 1, "manifests": 0, "blobs": 0}
    assert versions[4]["removed"] == {"tags": 1, "manifests": 0, "blobs": 0}
    assert versions[4]["present"] == {"tags": 3, "manifests": 2, "blobs": 6}
    assert versions[4]["base_version"] == 3
    shown = await ok(server, "GET", "/repositories/team/app/versions/4")
    assert shown == versions[4]
    await error(server, "GET", "/repositories/team/app/versions/9", status=404,
                code="VERSION_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_content_by_type_is_paged(server):
    first, second = await two_pushes(server)
    page = await ok(server, "GET", "/repositories/team/app/versions/4/content/tags?limit=2")
    assert page["items"] == [{"name": "1.0", "digest": first.digest},
                             {"name": "2.0", "digest": second.digest}]
    assert page["next"] == "2.0"
    rest = await ok(server, "GET", "/repositories/team/app/versions/4/content/tags?after=2.0")
    assert rest["items"] == [{"name": "latest", "digest": second.digest}]
    blobs = await ok(server, "GET", "/repositories/team/app/versions/1/content/blobs")
    assert sorted(b["digest"] for b in blobs["items"]) == sorted(first.blobs)
    await error(server, "GET", "/repositories/team/app/versions/1/content/things", field="kind")
    await error(server, "GET", "/repositories/team/app/versions/1/content/tags?limit=x",
                field="limit")


@pytest_twisted.ensureDeferred
async def test_diff_reports_tags_added_removed_moved_and_content_both_ways(server):
    first, second = await two_pushes(server)
    diff = await ok(server, "GET", "/repositories/team/app/versions/2/diff/4")
    assert diff["tags"] == {
        "added": {"2.0": second.digest},
        "removed": {},
        "moved": {"latest": {"from": first.digest, "to": second.digest}},
    }
    assert diff["manifests"] == {"added": [second.digest], "removed": []}
    assert diff["blobs"] == {"added": sorted(second.blobs), "removed": []}
    back = await ok(server, "GET", "/repositories/team/app/versions/4/diff/2")
    assert back["tags"]["removed"] == {"2.0": second.digest}
    assert back["manifests"] == {"added": [], "removed": [second.digest]}
    await error(server, "GET", "/repositories/team/app/versions/2/diff/7", status=404)


@pytest_twisted.ensureDeferred
async def test_rollback_makes_a_new_version_equal_to_the_old_one(server):
    first, second = await two_pushes(server)
    change = await ok(server, "POST", "/repositories/team/app/rollback", {"version": 2}, 201)
    assert change == {"repository": "team/app", "version": 5, "created": True}
    content = await ok(server, "GET", "/repositories/team/app/versions/5/content")
    old = await ok(server, "GET", "/repositories/team/app/versions/2/content")
    assert {k: content[k] for k in ("tags", "manifests", "blobs")} == {
        k: old[k] for k in ("tags", "manifests", "blobs")}
    assert (await ok(server, "GET", "/repositories/team/app/versions/5"))["reason"] == (
        "rollback to 2")
    assert await pulled_digest(server, "team/app", "latest") == first.digest
    assert await pulled_digest(server, "team/app", "2.0") is None
    # Rolling back to what is already there changes nothing.
    again = await ok(server, "POST", "/repositories/team/app/rollback", {"version": 2}, 200)
    assert again == {"repository": "team/app", "version": 5, "created": False}
    await error(server, "POST", "/repositories/team/app/rollback", {"version": 40}, 404)
    await error(server, "POST", "/repositories/team/app/rollback", {"version": "2"}, 400,
                field="version")


@pytest_twisted.ensureDeferred
async def test_rollback_refuses_when_a_blob_it_needs_has_lost_its_bytes(server):
    first, _ = await two_pushes(server)
    await push_image(server, "team/app", make_image(), "latest")  # v5
    await ok(server, "POST", "/repositories/team/app/modify", {"remove_tags": ["1.0"]}, 201)
    await ok(server, "POST", "/repositories/team/app/modify",
             {"remove_manifests": [first.digest]}, 201)
    gone = sorted(first.blobs)[0]
    from ocireg.digest import Digest

    await server.registry.blobs.delete_blob(Digest.parse(gone))
    failure = await error(server, "POST", "/repositories/team/app/rollback", {"version": 1},
                          409, "CONFLICT")
    assert gone in failure["message"]
    assert (await ok(server, "GET", "/repositories/team/app"))["latest_version"] == 7


@pytest_twisted.ensureDeferred
async def test_modify_copies_a_tag_from_another_repository_with_its_closure(server):
    image = make_image(layers=3)
    await push_image(server, "team/src", image, "1.0")
    await ok(server, "POST", "/repositories/", {"name": "team/dst"}, status=201)
    change = await ok(server, "POST", "/repositories/team/dst/modify", {
        "add_tags": {"stable": "1.0"}, "source": {"repository": "team/src"}}, 201)
    content = await ok(server, "GET", f"/repositories/team/dst/versions/{change['version']}"
                       "/content")
    assert content["tags"] == {"stable": image.digest}
    assert content["manifests"] == [image.digest]
    assert content["blobs"] == sorted(image.blobs)
    assert await pulled_digest(server, "team/dst", "stable") == image.digest
    await error(server, "POST", "/repositories/team/dst/modify", {
        "add_tags": {"x": "nope"}, "source": {"repository": "team/src"}}, 404,
        "CONTENT_UNKNOWN", "add_tags.x")
    await error(server, "POST", "/repositories/team/dst/modify", {
        "add_tags": {"x": "1.0"}, "source": {"repository": "team/none"}}, 404, "NAME_UNKNOWN")
    await error(server, "POST", "/repositories/team/dst/modify", {}, 400, "INVALID")
    await error(server, "POST", "/repositories/team/dst/modify",
                {"remove_tags": ["missing"]}, 404, field="remove_tags[0]")
    await error(server, "POST", "/repositories/team/dst/modify",
                {"add_manifests": ["sha256:zz"]}, 400, field="add_manifests[0]")
    await error(server, "POST", "/repositories/team/dst/modify",
                {"add_tags": {"x": "1.0"}, "source": {"version": "old"}}, 400,
                field="source.version")


@pytest_twisted.ensureDeferred
async def test_modify_removing_a_manifest_takes_its_tags_and_unshared_blobs(server):
    first, second = await two_pushes(server)
    await ok(server, "POST", "/repositories/team/app/modify",
             {"remove_manifests": [first.digest]}, 201)
    content = await ok(server, "GET", "/repositories/team/app/versions/5/content")
    assert content["tags"] == {"2.0": second.digest, "latest": second.digest}
    assert content["blobs"] == sorted(second.blobs)


@pytest_twisted.ensureDeferred
async def test_modify_refuses_to_remove_a_child_its_index_needs_naming_the_index(server):
    children = [make_image(), make_image()]
    for child in children:
        await push_image(server, "team/app", child, reference=None)
    index = make_index(children)
    await push_image(server, "team/app", index, "multi")
    before = (await ok(server, "GET", "/repositories/team/app/versions/"))["versions"]
    failure = await error(server, "POST", "/repositories/team/app/modify",
                          {"remove_manifests": [children[0].digest]}, 409)
    assert index.digest in failure["message"]
    assert (await ok(server, "GET", "/repositories/team/app/versions/"))["versions"] == before
    # With its index, it goes.
    await ok(server, "POST", "/repositories/team/app/modify",
             {"remove_manifests": [children[0].digest, index.digest]}, 201)


@pytest_twisted.ensureDeferred
async def test_deleting_a_version_folds_it_into_the_next_and_keeps_others_intact(server):
    await two_pushes(server)
    before = {
        n: await ok(server, "GET", f"/repositories/team/app/versions/{n}/content")
        for n in (1, 2, 3, 4)
    }
    await ok(server, "DELETE", "/repositories/team/app/versions/2", status=204)
    await ok(server, "DELETE", "/repositories/team/app/versions/3", status=204)
    for n in (1, 4):
        assert await ok(server, "GET", f"/repositories/team/app/versions/{n}/content") == (
            before[n])
    versions = (await ok(server, "GET", "/repositories/team/app/versions/"))["versions"]
    assert [v["number"] for v in versions] == [0, 1, 4]
    assert versions[2]["base_version"] == 1
    assert versions[2]["present"] == {"tags": 3, "manifests": 2, "blobs": 6}
    assert versions[2]["added"] == {"tags": 2, "manifests": 1, "blobs": 3}
    await error(server, "DELETE", "/repositories/team/app/versions/3", status=404)
    await error(server, "DELETE", "/repositories/team/app/versions/0", status=409)
    await error(server, "DELETE", "/repositories/team/app/versions/4", status=409)


@pytest_twisted.ensureDeferred
async def test_retain_versions_keeps_the_last_n_after_each_push(server):
    image = make_image()
    await ok(server, "POST", "/repositories/", {"name": "team/app", "retain_versions": 2}, 201)
    for tag in ("a", "b", "c", "d"):
        await push_image(server, "team/app", image, tag)
    versions = (await ok(server, "GET", "/repositories/team/app/versions/"))["versions"]
    assert [v["number"] for v in versions] == [0, 3, 4]
    assert versions[1]["present"]["tags"] == 3
    content = await ok(server, "GET", "/repositories/team/app/versions/4/content")
    assert sorted(content["tags"]) == ["a", "b", "c", "d"]
    repo = await ok(server, "PATCH", "/repositories/team/app", {"retain_versions": 1})
    assert repo["retain_versions"] == 1
    versions = (await ok(server, "GET", "/repositories/team/app/versions/"))["versions"]
    assert [v["number"] for v in versions] == [0, 4]
    await error(server, "PATCH", "/repositories/team/app", {"retain_versions": -1},
                field="retain_versions")


async def reasons(server, name="team/app") -> dict[int, str]:
    versions = (await ok(server, "GET", f"/repositories/{name}/versions/"))["versions"]
    return {v["number"]: v["reason"] for v in versions}


@pytest_twisted.ensureDeferred
async def test_after_a_version_is_deleted_the_reasons_say_what_folded_in_and_what_is_gone(
    server,
):
    image = make_image()
    for tag in ("a", "b", "c"):
        await push_image(server, "team/app", image, tag)
    await ok(server, "POST", "/repositories/team/app/rollback", {"version": 2}, 201)
    await ok(server, "POST", "/repositories/team/app/modify",
             {"add_tags": {"d": "a"}, "source": {"version": 2}}, 201)
    await push_image(server, "team/app", image, "e")
    assert (await reasons(server))[4] == "rollback to 2"

    await ok(server, "DELETE", "/repositories/team/app/versions/2", status=204)
    await ok(server, "DELETE", "/repositories/team/app/versions/3", status=204)

    assert await reasons(server) == {
        0: "created",
        1: "push tag a",
        4: "rollback to 2 (deleted since) (with deleted versions 2: push tag b | "
           "3: push tag c)",
        5: "modify: add tag d from this repository version 2 (deleted since)",
        6: "push tag e",
    }


@pytest_twisted.ensureDeferred
async def test_retention_keeps_the_oldest_kept_reason_true_and_bounded(server):
    image = make_image()
    await ok(server, "POST", "/repositories/", {"name": "team/app", "retain_versions": 2}, 201)
    for n in range(1, 11):
        await push_image(server, "team/app", image, f"t{n}")
    assert await reasons(server) == {
        0: "created",
        9: "push tag t9 (with deleted versions 1-4 | 5: push tag t5 | 6: push tag t6 | "
           "7: push tag t7 | 8: push tag t8)",
        10: "push tag t10",
    }


# Staging


@pytest_twisted.ensureDeferred
async def test_staging_lists_uploaded_blobs_with_their_age_and_discards_them(server):
    digest = await push_blob(server, "team/app")
    staged = await ok(server, "GET", "/repositories/team/app/staging")
    assert [(i["kind"], i["digest"]) for i in staged["content"]] == [("blob", digest)]
    assert staged["age"] >= 0
    assert (await ok(server, "DELETE", "/repositories/team/app/staging"))["discarded"] == 1
    staged = await ok(server, "GET", "/repositories/team/app/staging")
    assert staged["content"] == [] and staged["age"] is None
    response = await server.request("HEAD", f"/v2/team/app/blobs/{digest}")
    assert response.code == 404


# Distributions


@pytest_twisted.ensureDeferred
async def test_a_pinned_distribution_serves_exactly_the_pinned_version(server):
    first, second = await two_pushes(server)
    pinned = await ok(server, "POST", "/distributions/", {
        "base_path": "prod/app", "repository": "team/app", "version": 2}, 201)
    assert pinned == {**pinned, "base_path": "prod/app", "version": 2, "serves": 2}
    assert await pulled_digest(server, "prod/app", "latest") == first.digest
    assert await pulled_digest(server, "prod/app", "2.0") is None
    assert await pulled_digest(server, "prod/app", second.digest) is None
    response = await server.request("GET", "/v2/prod/app/tags/list")
    assert json.loads(await response.content())["tags"] == ["1.0", "latest"]
    blob = sorted(second.blobs)[0]
    response = await server.request("HEAD", f"/v2/prod/app/blobs/{blob}")
    assert response.code == 404
    # The repository's own distribution still follows the latest version.
    assert await pulled_digest(server, "team/app", "latest") == second.digest
    # Unpinned, it follows the latest too.
    await ok(server, "PATCH", "/distributions/prod/app", {"version": None})
    assert await pulled_digest(server, "prod/app", "latest") == second.digest


@pytest_twisted.ensureDeferred
async def test_a_push_to_a_pinned_distribution_is_denied_saying_why(server, tmp_path):
    first, _ = await two_pushes(server)
    await ok(server, "PATCH", "/distributions/team/app", {"version": 1})
    response = await server.request("POST", "/v2/team/app/blobs/uploads/")
    failure = await assert_oci_error(response, 403, "DENIED")
    assert "pinned" in failure["message"]
    # Refused as a whole: no upload session, and no upload file left behind.
    assert (await ok(server, "GET", "/repositories/team/app/staging"))["uploads"] == []
    assert list((tmp_path / "data" / "uploads").iterdir()) == []
    response = await server.request(
        "PUT", f"/v2/team/app/manifests/{first.digest}", data=first.body,
        headers={"Content-Type": first.media_type})
    await assert_oci_error(response, 403, "DENIED")
    response = await server.request("DELETE", "/v2/team/app/manifests/1.0")
    await assert_oci_error(response, 403, "DENIED")
    assert (await ok(server, "GET", "/repositories/team/app"))["latest_version"] == 4


@pytest_twisted.ensureDeferred
async def test_distribution_crud_and_errors(server):
    await two_pushes(server)
    await ok(server, "POST", "/distributions/", {"base_path": "x/y", "repository": "team/app"},
             201)
    await error(server, "POST", "/distributions/",
                {"base_path": "x/y", "repository": "team/app"}, 409, field="base_path")
    await error(server, "POST", "/distributions/",
                {"base_path": "x/z", "repository": "team/none"}, 404)
    await error(server, "POST", "/distributions/",
                {"base_path": "x/z", "repository": "team/app", "version": 99}, 404)
    await error(server, "POST", "/distributions/",
                {"base_path": "X", "repository": "team/app"}, 400, field="base_path")
    listed = await ok(server, "GET", "/distributions/?repository=team/app")
    assert [d["base_path"] for d in listed["distributions"]] == ["team/app", "x/y"]
    await ok(server, "DELETE", "/distributions/x/y", status=204)
    await error(server, "DELETE", "/distributions/x/y", status=404,
                code="DISTRIBUTION_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_a_version_pinned_by_a_distribution_cannot_be_deleted(server):
    await two_pushes(server)
    await ok(server, "POST", "/distributions/", {
        "base_path": "prod/app", "repository": "team/app", "version": 2}, 201)
    failure = await error(server, "DELETE", "/repositories/team/app/versions/2", status=409)
    assert "prod/app" in failure["message"]


@pytest_twisted.ensureDeferred
async def test_unknown_routes_and_methods_answer_json_errors(server):
    await error(server, "GET", "/nothing", status=404, code="NOT_FOUND")
    await error(server, "PUT", "/distributions/", status=405)
    got, document = await call(server, "GET", "/openapi.json")
    assert got == 200 and document["openapi"].startswith("3.")


@pytest_twisted.ensureDeferred
async def test_bodies_nested_too_deep_are_400_naming_the_body(server):
    await two_pushes(server)
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        for path in ("/repositories/", "/repositories/team/app/rollback", "/distributions/"):
            response = await server.request(
                "POST", "/api/v1" + path, data=body, headers={"Content-Type": "application/json"}
            )
            document = json.loads(await response.content())
            assert response.code == 400, document
            assert document["error"]["code"] == "INVALID"
            assert document["error"]["field"] == "body"


@pytest_twisted.ensureDeferred
async def test_limits_and_version_numbers_take_only_ascii_digits_and_never_500(server):
    await two_pushes(server)
    for limit in ("%C2%B2", "%D9%A1%D9%A2", "9" * 5000):
        for path in ("/repositories/", "/repositories/team/app/versions/4/content/tags",
                     "/distributions/"):
            await error(server, "GET", f"{path}?limit={limit}", field="limit")
    # No version route takes them: a 404, or a 400 from the route they then
    # match (a repository named "team/app/versions/²").
    for number in ("%C2%B2", "%D9%A1", "9" * 20, "9" * 5000):
        for method, path in (("GET", f"/repositories/team/app/versions/{number}"),
                             ("DELETE", f"/repositories/team/app/versions/{number}"),
                             ("GET", f"/repositories/team/app/versions/{number}/content"),
                             ("GET", f"/repositories/team/app/versions/1/diff/{number}")):
            got, document = await call(server, method, path)
            assert got in (400, 404), (path[:80], document)


@pytest_twisted.ensureDeferred
async def test_a_nul_in_a_query_parameter_is_400_naming_it(server):
    # PostgreSQL keeps no NUL in text: these were a 500 there.
    await two_pushes(server)
    for path, field in (("/repositories/?prefix=a%00b", "prefix"),
                        ("/repositories/?after=a%00b", "after"),
                        ("/repositories/team/app/versions/4/content/tags?after=a%00b", "after"),
                        ("/distributions/?after=a%00b", "after")):
        await error(server, "GET", path, field=field)


@pytest_twisted.ensureDeferred
async def test_the_catalog_lists_the_names_distributions_serve(server):
    await two_pushes(server)
    await ok(server, "POST", "/distributions/", {
        "base_path": "prod/app", "repository": "team/app", "version": 2}, 201)
    await ok(server, "DELETE", "/distributions/team/app", status=204)
    response = await server.request("GET", "/v2/_catalog")
    assert json.loads(await response.content())["repositories"] == ["prod/app"]


@pytest_twisted.ensureDeferred
async def test_collections_answer_with_or_without_their_trailing_slash_and_odd_paths_never_500(
    server,
):
    await push_image(server, "team/app", make_image(), "v1")
    for path in ("/repositories/team/app/versions", "/repositories/team/app/versions/"):
        listed = await ok(server, "GET", path)
        assert [v["number"] for v in listed["versions"]] == [0, 1]
    for path in ("/repositories", "/distributions"):
        assert await ok(server, "GET", path) == await ok(server, "GET", path + "/")
    await error(server, "GET", "/repositories/nope/versions", status=404, code="NAME_UNKNOWN")
    for path in ("//repositories/", "/repositories//team/app", "/repositories/team/app/",
                 "/repositories/team/app/versions/1/", "//gc"):
        status, document = await call(server, "GET", path)
        assert status in (400, 404), (path, status, document)
        assert set(document) == {"error"}, document
