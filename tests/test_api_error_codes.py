"""Every error of the registry API (`/v2/`, and the token endpoint) carries a code of the
OCI distribution spec's table, with the status that goes with it.

One walk through every way a request can fail: unmatched routes, wrong methods,
bad names, references, digests, ranges and page sizes, unknown uploads,
refused deletes, and with auth on, refused credentials and token requests.
"""

from __future__ import annotations

import json

import pytest_twisted

from tests.api_helpers import (
    OCI_MANIFEST,
    assert_oci_error,
    digest_of,
    header,
    make_image,
    push_image,
    random_bytes,
    start_upload,
    with_query,
)
from tests.auth_helpers import anonymous, user
from tests.test_auth_api import _start

#: The `code` of an error body MUST be one of these (distribution-spec, "Error Codes").
SPEC_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
}

NO_SUCH_BLOB = digest_of(b"never pushed")
NOT_A_DIGEST = "sha256:" + "z" * 64


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def _walk(server, cases) -> list[str]:
    """Send each case's request; what differs from the status and code expected."""
    wrong = []
    for what, (method, path, kwargs), status, code in cases:
        response = await server.request(method, path, **kwargs)
        if method == "HEAD":
            await response.content()
            if response.code != status:
                wrong.append(f"{what}: {method} {path[:80]} answered {response.code}, not {status}")
            continue
        body = await response.content()
        try:
            error = await assert_oci_error(response, status, code)
        except AssertionError:
            wrong.append(f"{what}: {method} {path[:80]} answered {response.code} {body[:300]!r}, "
                         f"not {status} {code}")
            continue
        if error["code"] not in SPEC_CODES:
            wrong.append(f"{what}: {error['code']} is not a code of the spec")
        if status == 405 and not header(response, "Allow"):
            wrong.append(f"{what}: a 405 without Allow")
    return wrong


@pytest_twisted.ensureDeferred
async def test_every_error_of_the_registry_api_has_a_spec_code_and_status(server):
    image = make_image(layers=1)
    await push_image(server, "team/app", image, "v1")
    layer = image.document["layers"][0]["digest"]
    upload = await start_upload(server, "team/app")
    held = await server.request(
        "PATCH", upload, data=b"a" * 10,
        headers={"Content-Range": "0-9", "Content-Type": "application/octet-stream"},
    )
    await held.content()
    assert held.code == 202
    orphan = make_image()
    await push_image(server, "team/pinned", make_image(), "v1")
    pin = await server.request("PATCH", "/api/v1/distributions/team/pinned",
                               data=json.dumps({"version": 1}).encode(),
                               headers={"Content-Type": "application/json"})
    await pin.content()
    assert pin.code == 200
    manifest = {"headers": {"Content-Type": OCI_MANIFEST}}

    def req(method, path, **kwargs):
        return method, path, kwargs

    cases = [
        # Paths and methods
        ("no such endpoint", req("GET", "/v2/team/app"), 404, "UNSUPPORTED"),
        ("no such endpoint outside /v2/", req("GET", "/nothing"), 404, "UNSUPPORTED"),
        ("wrong method", req("PATCH", "/v2/team/app/manifests/v1"), 405, "UNSUPPORTED"),
        ("wrong method on the catalog", req("DELETE", "/v2/_catalog"), 405, "UNSUPPORTED"),
        ("name with a leading slash", req("GET", "/v2//team/app/manifests/v1"), 404,
         "MANIFEST_UNKNOWN"),
        # Names
        ("invalid name", req("GET", "/v2/Team/App/tags/list"), 400, "NAME_INVALID"),
        ("unknown repository", req("GET", "/v2/nope/tags/list"), 404, "NAME_UNKNOWN"),
        ("push to an invalid name", req("POST", "/v2/Team/App/blobs/uploads/"), 400,
         "NAME_INVALID"),
        # Manifests
        ("unknown tag", req("GET", "/v2/team/app/manifests/nope"), 404, "MANIFEST_UNKNOWN"),
        ("unknown digest", req("GET", f"/v2/team/app/manifests/{NO_SUCH_BLOB}"), 404,
         "MANIFEST_UNKNOWN"),
        ("impossible reference", req("GET", "/v2/team/app/manifests/.INVALID_MANIFEST_NAME"),
         404, "MANIFEST_UNKNOWN"),
        ("HEAD of an impossible reference",
         req("HEAD", "/v2/team/app/manifests/.INVALID_MANIFEST_NAME"), 404, None),
        ("delete of an impossible reference",
         req("DELETE", "/v2/team/app/manifests/.INVALID_MANIFEST_NAME"), 404, "MANIFEST_UNKNOWN"),
        ("malformed digest reference", req("GET", f"/v2/team/app/manifests/{NOT_A_DIGEST}"),
         404, "MANIFEST_UNKNOWN"),
        ("delete of an unsupported digest",
         req("DELETE", "/v2/team/app/manifests/md5:" + "0" * 32), 404, "MANIFEST_UNKNOWN"),
        ("delete of an unknown tag", req("DELETE", "/v2/team/app/manifests/nope"), 404,
         "MANIFEST_UNKNOWN"),
        ("Accept refusing the manifest's type",
         req("GET", "/v2/team/app/manifests/v1", headers={"Accept": "text/html"}), 404,
         "MANIFEST_UNKNOWN"),
        ("push under an invalid tag",
         req("PUT", "/v2/team/app/manifests/.INVALID_MANIFEST_NAME", data=image.body,
             **manifest), 400, "MANIFEST_INVALID"),
        ("push under a malformed digest",
         req("PUT", f"/v2/team/app/manifests/{NOT_A_DIGEST}", data=image.body, **manifest),
         400, "DIGEST_INVALID"),
        ("push under another manifest's digest",
         req("PUT", f"/v2/team/app/manifests/{NO_SUCH_BLOB}", data=image.body, **manifest),
         400, "DIGEST_INVALID"),
        ("manifest that is not JSON",
         req("PUT", "/v2/team/app/manifests/v2", data=b"{nope", **manifest), 400,
         "MANIFEST_INVALID"),
        ("manifest nested 10,000 deep",
         req("PUT", "/v2/team/app/manifests/v2", data=_deep(10_000), **manifest), 400,
         "MANIFEST_INVALID"),
        ("manifest with a lone surrogate",
         req("PUT", "/v2/team/app/manifests/v2", data=json.dumps(
             dict(image.document, artifactType="\ud800")).encode(), **manifest), 400,
         "MANIFEST_INVALID"),
        ("manifest whose blobs are missing",
         req("PUT", "/v2/team/app/manifests/v2", data=orphan.body, **manifest), 400,
         "MANIFEST_BLOB_UNKNOWN"),
        ("manifest over the size limit",
         req("PUT", "/v2/team/app/manifests/v2", data=b" " * (4 * 1024 * 1024 + 1), **manifest),
         413, "SIZE_INVALID"),
        # Blobs
        ("unknown blob", req("GET", f"/v2/team/app/blobs/{NO_SUCH_BLOB}"), 404, "BLOB_UNKNOWN"),
        ("HEAD of an unknown blob", req("HEAD", f"/v2/team/app/blobs/{NO_SUCH_BLOB}"), 404,
         None),
        ("malformed blob digest", req("GET", f"/v2/team/app/blobs/{NOT_A_DIGEST}"), 400,
         "DIGEST_INVALID"),
        ("range past the blob's end",
         req("GET", f"/v2/team/app/blobs/{layer}", headers={"Range": "bytes=99999-"}), 416,
         "SIZE_INVALID"),
        ("delete of a blob a tagged manifest needs",
         req("DELETE", f"/v2/team/app/blobs/{layer}"), 405, "UNSUPPORTED"),
        ("delete of an unknown blob", req("DELETE", f"/v2/team/app/blobs/{NO_SUCH_BLOB}"), 404,
         "BLOB_UNKNOWN"),
        # Uploads
        ("unknown upload", req("GET", "/v2/team/app/blobs/uploads/no-such-upload"), 404,
         "BLOB_UPLOAD_UNKNOWN"),
        ("upload id with a slash", req("PATCH", "/v2/team/app/blobs/uploads/a/b", data=b"x"),
         404, "BLOB_UPLOAD_UNKNOWN"),
        ("upload id with an encoded slash",
         req("PATCH", "/v2/team/app/blobs/uploads/a%2Fb", data=b"x"), 404,
         "BLOB_UPLOAD_UNKNOWN"),
        ("upload id of dots", req("PATCH", "/v2/team/app/blobs/uploads/%2E%2E", data=b"x"),
         404, "BLOB_UPLOAD_UNKNOWN"),
        ("malformed Content-Range",
         req("PATCH", upload, data=b"x", headers={"Content-Range": "bytes"}), 400,
         "BLOB_UPLOAD_INVALID"),
        ("chunk out of order",
         req("PATCH", upload, data=b"b" * 10, headers={"Content-Range": "20-29"}), 416,
         "BLOB_UPLOAD_INVALID"),
        ("Content-Range of 5000 digits",
         req("PATCH", upload, data=b"b", headers={"Content-Range": "10-" + "9" * 5000}), 400,
         "BLOB_UPLOAD_INVALID"),
        ("Content-Range of Arabic-Indic digits",
         req("PATCH", upload, data=b"b", headers={"Content-Range": "\u0661-\u0661".encode()}),
         400, "BLOB_UPLOAD_INVALID"),
        ("Content-Range ending before it starts",
         req("PATCH", upload, data=b"b", headers={"Content-Range": "10-5"}), 416,
         "BLOB_UPLOAD_INVALID"),
        ("Content-Range disagreeing with Content-Length",
         req("PATCH", upload, data=b"b" * 5, headers={"Content-Range": "10-29"}), 400,
         "SIZE_INVALID"),
        ("closing PUT out of order",
         req("PUT", with_query(upload, f"digest={NO_SUCH_BLOB}"), data=b"c",
             headers={"Content-Range": "50-50"}), 416, "BLOB_UPLOAD_INVALID"),
        ("closing PUT without a digest", req("PUT", upload), 400, "DIGEST_INVALID"),
        ("monolithic push with the wrong digest",
         req("POST", f"/v2/team/app/blobs/uploads/?digest={NO_SUCH_BLOB}",
             data=random_bytes(10)), 400, "DIGEST_INVALID"),
        ("cancel of an unknown upload",
         req("DELETE", "/v2/team/app/blobs/uploads/no-such-upload"), 404, "BLOB_UPLOAD_UNKNOWN"),
        # Text no database keeps (PostgreSQL refuses NUL), and paths that are not UTF-8
        ("NUL in an upload id", req("GET", "/v2/team/app/blobs/uploads/a%00b"), 404,
         "BLOB_UPLOAD_UNKNOWN"),
        ("NUL in an upload id of a chunk",
         req("PATCH", "/v2/team/app/blobs/uploads/a%00b", data=b"x"), 404, "BLOB_UPLOAD_UNKNOWN"),
        ("NUL in a tag", req("GET", "/v2/team/app/manifests/v%001"), 404, "MANIFEST_UNKNOWN"),
        ("upload id not UTF-8", req("GET", "/v2/team/app/blobs/uploads/%ED%A0%80"), 404,
         "BLOB_UPLOAD_UNKNOWN"),
        ("path not UTF-8", req("GET", "/v2/t%FF/tags/list"), 404, "UNSUPPORTED"),
        ("NUL in last", req("GET", "/v2/team/app/tags/list?last=a%00b"), 400, "UNSUPPORTED"),
        ("NUL in the catalog's last", req("GET", "/v2/_catalog?last=a%00b"), 400,
         "UNSUPPORTED"),
        ("NUL in artifactType",
         req("GET", f"/v2/team/app/referrers/{image.digest}?artifactType=a%00b"), 400,
         "UNSUPPORTED"),
        # A distribution pinned to a version takes no push
        ("push to a pinned distribution", req("POST", "/v2/team/pinned/blobs/uploads/"), 403,
         "DENIED"),
        # Listings
        ("n not a number", req("GET", "/v2/team/app/tags/list?n=abc"), 400, "UNSUPPORTED"),
        ("n negative", req("GET", "/v2/team/app/tags/list?n=-1"), 400, "UNSUPPORTED"),
        ("n a Unicode digit", req("GET", "/v2/team/app/tags/list?n=%C2%B2"), 400, "UNSUPPORTED"),
        ("n of 5000 digits", req("GET", "/v2/team/app/tags/list?n=" + "9" * 5000), 400,
         "UNSUPPORTED"),
        ("catalog n a Unicode digit", req("GET", "/v2/_catalog?n=%C2%B2"), 400, "UNSUPPORTED"),
        ("catalog n of 5000 digits", req("GET", "/v2/_catalog?n=" + "9" * 5000), 400,
         "UNSUPPORTED"),
        # Referrers
        ("referrers of a malformed digest",
         req("GET", f"/v2/team/app/referrers/{NOT_A_DIGEST}"), 400, "DIGEST_INVALID"),
    ]
    wrong = await _walk(server, cases)
    assert not wrong, "\n".join(wrong)
    # The refused requests changed nothing: the image still pulls whole.
    response = await server.request("GET", "/v2/team/app/manifests/v1")
    assert await response.content() == image.body
    status = await server.request("GET", upload)
    await status.content()
    assert header(status, "Range") == "0-9"


@pytest_twisted.ensureDeferred
async def test_every_error_with_auth_on_has_a_spec_code_and_status(auth_server):
    await push_image(user(auth_server, "alice"), "team/app", make_image(), "v1")
    cases = [
        ("anonymous base request", (anonymous(auth_server), "GET", "/v2/"), 401,
         "UNAUTHORIZED"),
        ("wrong password", (auth_server, "GET", "/v2/team/app/tags/list", {
            "headers": {"Authorization": "Basic YWxpY2U6bm9wZQ=="}}), 401, "UNAUTHORIZED"),
        ("push without the right", (user(auth_server, "bob"), "POST",
                                    "/v2/team/app/blobs/uploads/"), 403, "DENIED"),
        ("token for another service", (user(auth_server, "alice"), "GET",
                                       "/token?service=elsewhere"), 400, "UNSUPPORTED"),
        ("token for a malformed scope", (user(auth_server, "alice"), "GET",
                                         "/token?scope=nonsense"), 400, "UNSUPPORTED"),
        ("token by an unsupported grant", (anonymous(auth_server), "POST", "/token", {
            "data": b"grant_type=magic",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}), 400,
         "UNSUPPORTED"),
        ("token form that is not a form", (anonymous(auth_server), "POST", "/token", {
            "data": b"\xff\xfe"}), 400, "UNSUPPORTED"),
        ("token by the wrong method", (anonymous(auth_server), "PUT", "/token"), 405,
         "UNSUPPORTED"),
        ("no such token endpoint", (anonymous(auth_server), "GET", "/token/more"), 404,
         "UNSUPPORTED"),
    ]
    wrong = []
    for what, (caller, method, path, *kwargs), status, code in cases:
        response = await caller.request(method, path, **(kwargs[0] if kwargs else {}))
        body = await response.content()
        try:
            error = await assert_oci_error(response, status, code)
        except AssertionError:
            wrong.append(f"{what}: answered {response.code} {body[:300]!r}, not {status} {code}")
            continue
        assert error["code"] in SPEC_CODES
    assert not wrong, "\n".join(wrong)


@pytest_twisted.async_yield_fixture
async def auth_server(tmp_path, database):
    server = await _start(tmp_path, database)
    try:
        yield server
    finally:
        await server.service.stopService()

