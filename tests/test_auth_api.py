"""Authentication and permissions through HTTP: 401 and 403 on every endpoint, tokens, uploads."""

from __future__ import annotations

import io
import json
import os
import time

import bcrypt
import jwt
import pytest
import pytest_twisted
import treq
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import globalLogPublisher

from ocireg import cli
from ocireg.auth.setup import GENERATED_KEY
from ocireg.config import Config
from ocireg.service import RegistryService
from tests.api_helpers import (
    assert_oci_error,
    digest_of,
    header,
    location_path,
    make_image,
    push_blob,
    push_image,
    random_bytes,
    sleep,
)
from tests.auth_helpers import (
    GROUPS,
    PASSWORDS,
    RULES,
    As,
    anonymous,
    basic,
    bearer,
    htpasswd_line,
    user,
    write_htpasswd,
)
from tests.conftest import InProcessServer
from tests.support import RegistryProcess, proc_status_kib


async def _start(tmp_path, database, **settings) -> InProcessServer:
    """A registry with auth on; its htpasswd file is the test's own if it wrote one."""
    htpasswd = tmp_path / "htpasswd"
    if not htpasswd.exists():
        write_htpasswd(htpasswd)
    config = Config(
        listen=("tcp:0:interface=127.0.0.1",), data_dir=str(tmp_path / "data"), database=database,
        auth_htpasswd=str(htpasswd), auth_rules=RULES, auth_groups=GROUPS, **settings,
    )
    service = RegistryService(config, reactor)
    service.startService()
    ports = await service.ready
    return InProcessServer(service, ports[0])


@pytest_twisted.async_yield_fixture
async def auth_server(tmp_path, database):
    server = await _start(tmp_path, database)
    try:
        yield server
    finally:
        await server.service.stopService()


async def _token(server, who: str | None, *scopes: str, service: str = "ocireg") -> dict:
    query = "&".join([f"service={service}"] + [f"scope={s}" for s in scopes])
    caller = anonymous(server) if who is None else user(server, who)
    response = await caller.request("GET", f"/token?{query}")
    body = await response.content()
    assert response.code == 200, (response.code, body)
    return json.loads(body)


def _challenge(response) -> str:
    return header(response, "WWW-Authenticate") or ""


# Logging in


@pytest_twisted.ensureDeferred
async def test_anonymous_base_request_gets_a_bearer_challenge_naming_the_token_endpoint(
    auth_server,
):
    response = await anonymous(auth_server).request("GET", "/v2/")
    await assert_oci_error(response, 401, "UNAUTHORIZED")
    assert _challenge(response) == (
        f'Bearer realm="{auth_server.url}/token",service="ocireg"'
    )


@pytest_twisted.ensureDeferred
async def test_basic_credentials_open_the_base_endpoint_and_a_wrong_password_does_not(
    auth_server,
):
    response = await user(auth_server, "alice").request("GET", "/v2/")
    assert response.code == 200
    await response.content()
    wrong = await anonymous(auth_server).request(
        "GET", "/v2/", headers={"Authorization": basic("alice", "nope")}
    )
    await assert_oci_error(wrong, 401, "UNAUTHORIZED")


async def _code(caller, method: str = "GET", path: str = "/v2/", **kwargs) -> int:
    response = await caller.request(method, path, **kwargs)
    await response.content()
    return response.code


def _guesser(server, name: str, source: str | None = None, password: str = "guess-123"):
    return As(server, basic(name, password), source)


@pytest_twisted.ensureDeferred
async def test_failed_logins_refuse_that_user_from_that_address_only_and_log_no_password(
    auth_server,
):
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(5):
            response = await _guesser(auth_server, "bob").request("GET", "/v2/")
            await assert_oci_error(response, 401, "UNAUTHORIZED")
        # bob from this address is refused until the window moves on...
        response = await user(auth_server, "bob").request("GET", "/v2/")
        await assert_oci_error(response, 429, "TOOMANYREQUESTS")
        assert int(header(response, "Retry-After")) > 0
        # ...but not bob from elsewhere, nor another user from this address.
        assert await _code(user(auth_server, "bob", source="127.0.0.2")) == 200
        assert await _code(user(auth_server, "alice")) == 200
    finally:
        globalLogPublisher.removeObserver(events.append)
    logged = [repr(e) for e in events if "failed login" in e.get("log_format", "")]
    assert logged, "failed logins are logged"
    assert not any("guess-123" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_a_password_right_a_moment_ago_is_not_refused_for_guesses_since(auth_server):
    # bob is pushing, his credentials on every request; someone guesses his password.
    assert await _code(user(auth_server, "bob")) == 200
    for _ in range(6):
        assert await _code(_guesser(auth_server, "bob")) in (401, 429)
    assert await _code(user(auth_server, "bob")) == 200


@pytest_twisted.ensureDeferred
async def test_failures_for_many_users_from_one_address_do_not_lock_out_the_others_there(
    tmp_path, database,
):
    server = await _start(tmp_path, database, auth_login_per_address=3, auth_login_window=3)
    try:
        for name in ("x1", "x2", "x3", "x4", "x5", "x6"):
            assert await _code(_guesser(server, name)) == 401
        # Slowed down at most: a right password from the same address still logs in.
        assert await _code(user(server, "alice")) == 200
    finally:
        await server.service.stopService()


@pytest_twisted.ensureDeferred
async def test_parallel_wrong_passwords_are_counted_before_they_are_checked(auth_server):
    # Sixty different guesses: the same one sent in parallel is one check.
    codes = await gatherResults([
        Deferred.fromCoroutine(_code(_guesser(auth_server, "alice", password=f"guess-{n}")))
        for n in range(60)
    ])
    # Those that reached bcrypt are a 401; the rest were refused at once.
    assert codes.count(401) <= 5
    assert codes.count(429) == 60 - codes.count(401)


@pytest_twisted.ensureDeferred
async def test_parallel_requests_with_one_right_password_share_its_check(auth_server):
    # A client sends its Basic credentials with each of its parallel requests
    # (containers/image uploads six layers at once): more of them than the
    # per-address login queue holds must all get in, not 429.
    codes = await gatherResults(
        [Deferred.fromCoroutine(_code(user(auth_server, "alice"))) for _ in range(12)]
    )
    assert codes == [200] * 12


@pytest_twisted.ensureDeferred
async def test_a_flood_of_guesses_from_one_address_does_not_queue_another_users_login(
    tmp_path, database,
):
    # A realistic bcrypt cost, so that a queue of guesses would show.
    path = tmp_path / "htpasswd"
    path.write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(10)).decode()}\n"
        for u, p in PASSWORDS.items()
    ))
    server = await _start(tmp_path, database)
    try:
        guesses = gatherResults([
            Deferred.fromCoroutine(_code(_guesser(server, f"user{n}", source="127.0.0.2")))
            for n in range(150)
        ])
        await sleep(0.2)
        started = time.monotonic()
        assert await _code(user(server, "alice")) == 200
        took = time.monotonic() - started
        codes = await guesses
    finally:
        await server.service.stopService()
    assert codes.count(429) >= 100, codes
    # 150 guesses at ~50 ms each on two threads would be seconds of queue.
    assert took < 2.0, took


@pytest_twisted.ensureDeferred
async def test_user_names_longer_than_256_bytes_are_refused_without_a_throttle_entry(
    auth_server,
):
    throttle = auth_server.service._auth.authoriser.throttle
    for n in range(20):
        response = await anonymous(auth_server).request(
            "POST", "/token", data={"grant_type": "password", "username": f"{n}" + "u" * 3000,
                                    "password": "x", "service": "ocireg"},
        )
        await assert_oci_error(response, 401, "UNAUTHORIZED")
    assert len(throttle) == 0
    assert await _code(_guesser(auth_server, "u" * 256)) == 401
    assert len(throttle) == 2


def test_failed_logins_with_long_names_from_many_addresses_leave_server_memory_flat(tmp_path):
    import http.client
    from urllib.parse import urlencode

    write_htpasswd(tmp_path / "htpasswd")
    (tmp_path / "ocireg.toml").write_text(f'auth_htpasswd = "{tmp_path / "htpasswd"}"\n')
    server = RegistryProcess(tmp_path / "data").start("--config", str(tmp_path / "ocireg.toml"))
    try:
        def fail(source: str, name: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30,
                                              source_address=(source, 0))
            body = urlencode({"grant_type": "password", "username": name, "password": "x"})
            conn.request("POST", "/token", body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            response = conn.getresponse()
            response.read()
            conn.close()
            return response.status

        assert fail("127.0.0.1", "warm-up") == 401
        before = proc_status_kib(server.process.pid, "VmRSS") * 1024
        # 300 addresses x 5 failures x 60 KB names: 90 MB if the names were kept.
        for n in range(1500):
            assert fail(f"127.0.{n // 5 // 250 + 1}.{n // 5 % 250 + 1}",
                        f"{n:08}" + "u" * 60_000) in (401, 429)
        grown = proc_status_kib(server.process.pid, "VmRSS") * 1024 - before
    finally:
        server.stop()
    assert grown < 30 * 1024 * 1024, f"the server grew by {grown // 1024 // 1024} MiB"


@pytest_twisted.ensureDeferred
async def test_passwords_longer_than_72_bytes_log_in_as_htpasswd_hashed_them(
    tmp_path, database,
):
    password = "correct horse battery staple " * 4
    assert len(password.encode()) > 72
    server = await _start(tmp_path, database)
    try:
        path = tmp_path / "htpasswd"
        hashed = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(4)).decode()
        path.write_text(path.read_text() + f"dave:{hashed}\n")
        await server.service._auth.watcher.reload()
        assert await _code(As(server, basic("dave", password))) == 200
        assert await _code(As(server, basic("dave", password[:60]))) == 401
    finally:
        await server.service.stopService()


# Pull and push with Basic


@pytest_twisted.ensureDeferred
async def test_user_with_push_pushes_and_a_puller_pulls_but_cannot_push(auth_server, tmp_path):
    image = make_image()
    await push_image(user(auth_server, "alice"), "team/app", image, "1.0")
    bob = user(auth_server, "bob")
    response = await bob.request("GET", "/v2/team/app/manifests/1.0")
    assert response.code == 200
    assert await response.content() == image.body
    data = random_bytes(2048)
    response = await bob.request(
        "POST", f"/v2/team/app/blobs/uploads/?digest={digest_of(data)}", data=data
    )
    await assert_oci_error(response, 403, "DENIED")
    response = await bob.request("POST", "/v2/team/app/blobs/uploads/")
    await assert_oci_error(response, 403, "DENIED")
    response = await bob.request(
        "PUT", "/v2/team/app/manifests/2.0", data=image.body,
        headers={"Content-Type": image.media_type},
    )
    await assert_oci_error(response, 403, "DENIED")
    # The refused body was discarded, never written.
    assert os.listdir(tmp_path / "data" / "uploads") == []


@pytest_twisted.ensureDeferred
async def test_anonymous_pull_where_a_rule_allows_it_and_401_with_the_scope_where_not(
    auth_server,
):
    await push_image(user(auth_server, "root"), "public/base", make_image(), "1")
    await push_image(user(auth_server, "root"), "team/app", make_image(), "1")
    response = await anonymous(auth_server).request("GET", "/v2/public/base/manifests/1")
    assert response.code == 200
    await response.content()
    response = await anonymous(auth_server).request("GET", "/v2/team/app/manifests/1")
    await assert_oci_error(response, 401, "UNAUTHORIZED")
    assert 'scope="repository:team/app:pull"' in _challenge(response)
    response = await anonymous(auth_server).request(
        "POST", "/v2/public/base/blobs/uploads/"
    )
    await assert_oci_error(response, 401, "UNAUTHORIZED")
    assert 'scope="repository:public/base:pull,push"' in _challenge(response)


@pytest_twisted.ensureDeferred
async def test_a_known_digest_does_not_open_a_repository_the_caller_may_not_pull(auth_server):
    alice, bob = user(auth_server, "alice"), user(auth_server, "bob")
    digest = await push_blob(alice, "secret/x", random_bytes())
    for method in ("HEAD", "GET"):
        response = await bob.request(method, f"/v2/secret/x/blobs/{digest}")
        assert response.code == 403
        await response.content()
    response = await bob.request("GET", f"/v2/secret/x/manifests/{digest}")
    await assert_oci_error(response, 403, "DENIED")
    response = await bob.request("GET", "/v2/secret/x/tags/list")
    await assert_oci_error(response, 403, "DENIED")
    # Through a repository bob may pull, the blob is not there either.
    response = await bob.request("HEAD", f"/v2/team/app/blobs/{digest}")
    assert response.code == 404


@pytest_twisted.ensureDeferred
async def test_mount_without_pull_on_the_source_is_a_plain_upload_and_leaks_nothing(
    auth_server,
):
    alice, bob = user(auth_server, "alice"), user(auth_server, "bob")
    secret = await push_blob(alice, "secret/x", random_bytes())
    response = await bob.request(
        "POST", f"/v2/bob/mine/blobs/uploads/?mount={secret}&from=secret/x"
    )
    assert response.code == 202
    await response.content()
    response = await bob.request("HEAD", f"/v2/bob/mine/blobs/{secret}")
    assert response.code == 404
    # From a repository bob may pull, the mount is honoured.
    shared = await push_blob(alice, "team/app", random_bytes())
    response = await bob.request(
        "POST", f"/v2/bob/mine/blobs/uploads/?mount={shared}&from=team/app"
    )
    assert response.code == 201
    await response.content()


@pytest_twisted.ensureDeferred
async def test_catalog_lists_only_what_the_caller_may_pull(auth_server):
    root = user(auth_server, "root")
    for name in ("public/base", "secret/x", "team/app", "bob/mine"):
        await push_image(root, name, make_image(), "1")

    async def catalog(caller) -> list[str]:
        response = await caller.request("GET", "/v2/_catalog")
        assert response.code == 200
        return json.loads(await response.content())["repositories"]

    assert await catalog(user(auth_server, "bob")) == ["bob/mine", "public/base", "team/app"]
    assert await catalog(anonymous(auth_server)) == ["public/base"]
    assert await catalog(root) == ["bob/mine", "public/base", "secret/x", "team/app"]
    response = await user(auth_server, "bob").request("GET", "/v2/_catalog?n=1")
    assert json.loads(await response.content())["repositories"] == ["bob/mine"]
    assert "last=bob%2Fmine" in header(response, "Link")


@pytest_twisted.ensureDeferred
async def test_an_upload_session_belongs_to_the_user_who_opened_it(auth_server, tmp_path):
    alice, root = user(auth_server, "alice"), user(auth_server, "root")
    response = await alice.request("POST", "/v2/team/app/blobs/uploads/")
    assert response.code == 202
    await response.content()
    location = location_path(header(response, "Location"))
    response = await root.request(
        "PATCH", location, data=b"x" * 1000, headers={"Content-Type": "application/octet-stream"}
    )
    await assert_oci_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    for method in ("GET", "DELETE"):
        response = await root.request(method, location)
        await assert_oci_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    (uploaded,) = os.listdir(tmp_path / "data" / "uploads")
    assert os.path.getsize(tmp_path / "data" / "uploads" / uploaded) == 0
    response = await alice.request("PATCH", location, data=b"y" * 10)
    assert response.code == 202
    await response.content()


@pytest_twisted.ensureDeferred
async def test_management_api_needs_an_admin(auth_server):
    response = await anonymous(auth_server).request("GET", "/api/v1/repositories/")
    assert response.code == 401
    assert _challenge(response).startswith("Basic ")
    await response.content()
    response = await user(auth_server, "bob").request("GET", "/api/v1/repositories/")
    assert response.code == 403
    assert json.loads(await response.content())["error"]["code"] == "DENIED"
    response = await user(auth_server, "root").request("GET", "/api/v1/repositories/")
    assert response.code == 200
    await response.content()


@pytest_twisted.ensureDeferred
async def test_management_api_needs_a_token_for_it_not_just_an_admins_token(auth_server):
    # A pull token of an admin (a leaked one, say) opens no management API.
    pull = (await _token(auth_server, "root", "repository:team/app:pull"))["token"]
    for token in (pull, (await _token(auth_server, "root"))["token"]):
        response = await bearer(auth_server, token).request("GET", "/api/v1/repositories/")
        assert response.code == 401
        assert 'scope="registry:management:*"' in _challenge(response)
        assert 'error="insufficient_scope"' in _challenge(response)
        await response.content()
    issued = await _token(auth_server, "root", "registry:management:*")
    assert issued["scope"] == "registry:management:*"
    response = await bearer(auth_server, issued["token"]).request("GET", "/api/v1/repositories/")
    assert response.code == 200
    await response.content()
    # Nobody else is granted it.
    issued = await _token(auth_server, "bob", "registry:management:*")
    assert issued["scope"] == ""
    response = await bearer(auth_server, issued["token"]).request("GET", "/api/v1/repositories/")
    assert response.code == 403
    await response.content()


@pytest_twisted.ensureDeferred
async def test_rules_reload_without_a_restart(auth_server):
    bob = user(auth_server, "bob")
    response = await bob.request("POST", "/v2/team/app/blobs/uploads/")
    await assert_oci_error(response, 403, "DENIED")
    config = auth_server.service._config
    new = Config(auth_htpasswd="x", auth_rules=[
        *RULES, {"users": ["bob"], "repositories": ["team/*"], "actions": ["push"]}
    ]).auth_rules
    hooks = auth_server.service.reload_hooks()
    assert hooks["auth_rules"](config.auth_rules, new) == "permissions applied"
    response = await bob.request("POST", "/v2/team/app/blobs/uploads/")
    assert response.code == 202
    await response.content()


@pytest_twisted.ensureDeferred
async def test_htpasswd_changes_are_read_without_a_restart(auth_server, tmp_path):
    dave = anonymous(auth_server)
    dave.authorization = basic("dave", "dave-pw")
    response = await dave.request("GET", "/v2/")
    await assert_oci_error(response, 401, "UNAUTHORIZED")
    path = tmp_path / "htpasswd"
    path.write_text(path.read_text() + htpasswd_line("dave", "dave-pw"))
    # Wait for the watcher rather than retrying logins: failures would be throttled.
    watcher = auth_server.service._auth.watcher
    deadline = time.monotonic() + 15
    while "dave" not in watcher.users.names:
        assert time.monotonic() < deadline, "the changed file was never read"
        await sleep(0.2)
    response = await dave.request("GET", "/v2/")
    assert response.code == 200
    await response.content()


# Tokens


@pytest_twisted.ensureDeferred
async def test_token_grants_the_intersection_of_what_was_asked_and_what_is_allowed(
    auth_server,
):
    issued = await _token(auth_server, "bob", "repository:team/app:pull,push,delete",
                          "repository:secret/x:pull")
    assert issued["expires_in"] == 300
    assert issued["issued_at"].endswith("Z")
    assert issued["scope"] == "repository:team/app:pull"
    claims = jwt.decode(issued["token"], options={"verify_signature": False})
    assert claims["sub"] == "bob" and claims["aud"] == "ocireg"
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert jwt.get_unverified_header(issued["token"])["alg"] == "ES256"
    anonymous_token = await _token(auth_server, None, "repository:public/base:pull",
                                   "repository:team/app:pull")
    assert anonymous_token["scope"] == "repository:public/base:pull"


@pytest_twisted.ensureDeferred
async def test_push_and_pull_with_tokens_and_a_token_for_one_repository_does_not_open_another(
    auth_server,
):
    token = (await _token(auth_server, "alice", "repository:team/app:pull,push"))["token"]
    with_token = bearer(auth_server, token)
    image = make_image()
    await push_image(with_token, "team/app", image, "1.0")
    response = await with_token.request("GET", "/v2/team/app/manifests/1.0")
    assert await response.content() == image.body
    # alice may push secret/x, but this token was not for it: ask for another.
    response = await with_token.request("POST", "/v2/secret/x/blobs/uploads/")
    await assert_oci_error(response, 401, "UNAUTHORIZED")
    challenge = _challenge(response)
    assert 'scope="repository:secret/x:pull,push"' in challenge
    assert 'error="insufficient_scope"' in challenge
    # bob's token can never push team/app: that is a 403, not a new token.
    bobs = (await _token(auth_server, "bob", "repository:team/app:pull,push"))["token"]
    response = await bearer(auth_server, bobs).request("POST", "/v2/team/app/blobs/uploads/")
    await assert_oci_error(response, 403, "DENIED")


@pytest_twisted.ensureDeferred
async def test_token_endpoint_refuses_bad_credentials_and_other_services(auth_server):
    response = await anonymous(auth_server).request(
        "GET", "/token?service=ocireg&scope=repository:team/app:pull",
        headers={"Authorization": basic("alice", "wrong")},
    )
    await assert_oci_error(response, 401, "UNAUTHORIZED")
    response = await user(auth_server, "alice").request("GET", "/token?service=elsewhere")
    assert response.code == 400
    await response.content()
    response = await user(auth_server, "alice").request("GET", "/token?scope=nonsense")
    assert response.code == 400
    await response.content()


@pytest_twisted.ensureDeferred
async def test_a_token_request_asks_for_at_most_64_scopes_in_all(auth_server):
    scopes = [f"repository:team/app{n}:pull" for n in range(65)]
    for query in ("scope=" + "%20".join(scopes),
                  "&".join(f"scope={s}" for s in scopes),
                  "scope=" + "%20".join(scopes[:40]) + "&scope=" + "%20".join(scopes[40:])):
        response = await user(auth_server, "bob").request("GET", f"/token?{query}")
        error = await assert_oci_error(response, 400, "UNSUPPORTED")
        assert "64" in error["message"]
    issued = await _token(auth_server, "bob", "%20".join(scopes[:64]))
    assert len(issued["scope"].split()) == 64


@pytest_twisted.ensureDeferred
async def test_a_token_request_body_over_64_kib_is_a_413(auth_server):
    form = {"grant_type": "password", "username": "bob", "password": PASSWORDS["bob"],
            "service": "ocireg", "scope": "repository:team/app:pull", "pad": "x" * 65536}
    response = await anonymous(auth_server).request("POST", "/token", data=form)
    await assert_oci_error(response, 413)
    form["pad"] = "x" * 1000
    response = await anonymous(auth_server).request("POST", "/token", data=form)
    assert response.code == 200
    assert json.loads(await response.content())["scope"] == "repository:team/app:pull"


@pytest_twisted.ensureDeferred
async def test_a_token_too_large_to_be_accepted_is_never_issued(auth_server):
    # root may pull anything: 64 long names would make a token the registry refuses.
    scopes = [f"repository:{'a' * 200}{n}:pull" for n in range(64)]
    response = await user(auth_server, "root").request(
        "GET", "/token?scope=" + "%20".join(scopes)
    )
    error = await assert_oci_error(response, 400, "UNSUPPORTED")
    assert "fewer scopes" in error["message"]
    # The same repository asked for again and again is one grant.
    issued = await _token(auth_server, "root", "%20".join(scopes[:1] * 64))
    assert issued["scope"] == scopes[0]


def _signing_key(server):
    from cryptography.hazmat.primitives import serialization

    path = os.path.join(server.service._config.data_dir, GENERATED_KEY)
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def _claims(**overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": "ocireg", "sub": "alice", "aud": "ocireg", "iat": now, "nbf": now - 1,
        "exp": now + 300,
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}],
    }
    claims.update(overrides)
    return claims


def _bad_tokens(server) -> dict[str, str]:
    key = _signing_key(server)
    other = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    good = jwt.encode(_claims(), key, algorithm="ES256")
    head, body, signature = good.split(".")
    return {
        "expired": jwt.encode(_claims(exp=now - 100, iat=now - 400), key, algorithm="ES256"),
        "wrong signature": jwt.encode(_claims(), other, algorithm="ES256"),
        "tampered": f"{head}.{jwt.utils.base64url_encode(json.dumps(_claims(sub='root')).encode()).decode()}.{signature}",  # noqa: E501
        "alg none": jwt.encode(_claims(), None, algorithm="none"),
        "wrong audience": jwt.encode(_claims(aud="elsewhere"), key, algorithm="ES256"),
        "wrong issuer": jwt.encode(_claims(iss="elsewhere"), key, algorithm="ES256"),
        "no expiry": jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, key,
                                algorithm="ES256"),
        "not a jwt": "not-a-token",
        "huge": "a" * 9000,
    }


@pytest_twisted.ensureDeferred
async def test_untrustworthy_tokens_are_a_401_never_a_500(auth_server):
    await push_image(user(auth_server, "alice"), "team/app", make_image(), "1")
    for name, token in _bad_tokens(auth_server).items():
        response = await bearer(auth_server, token).request("GET", "/v2/team/app/manifests/1")
        assert response.code == 401, name
        await assert_oci_error(response, 401, "UNAUTHORIZED")
        if name != "huge":  # refused as an oversized header, before it is read as a token
            assert 'error="invalid_token"' in _challenge(response), name
    # The same claims, properly signed, do open it.
    good = jwt.encode(_claims(), _signing_key(auth_server), algorithm="ES256")
    response = await bearer(auth_server, good).request("GET", "/v2/team/app/manifests/1")
    assert response.code == 200
    await response.content()


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + "bm9jb2xvbg==",  # "nocolon"
        "Basic " + "//79",  # not UTF-8
        "Digest username=alice",
        "Bearer",
        "Basic " + "A" * 9000,
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_authorization_headers_are_a_401_never_a_500(auth_server, authorization):
    response = await anonymous(auth_server).request(
        "GET", "/v2/", headers={"Authorization": authorization}
    )
    await assert_oci_error(response, 401, "UNAUTHORIZED")


@pytest_twisted.ensureDeferred
async def test_two_authorization_headers_are_a_401(auth_server):
    from twisted.web.http_headers import Headers

    response = await treq.request(
        "GET", auth_server.url + "/v2/", persistent=False, timeout=30,
        headers=Headers({"Authorization": [basic("alice", PASSWORDS["alice"]),
                                           basic("bob", PASSWORDS["bob"])]}),
    )
    await assert_oci_error(response, 401, "UNAUTHORIZED")


@pytest_twisted.ensureDeferred
async def test_the_challenge_names_auth_realm_whatever_host_the_client_sends(tmp_path, database):
    server = await _start(tmp_path, database, auth_realm="https://registry.example/token")
    try:
        for host in ("evil.example", "127.0.0.1"):
            response = await anonymous(server).request("GET", "/v2/", headers={"Host": host})
            await assert_oci_error(response, 401, "UNAUTHORIZED")
            assert _challenge(response) == (
                'Bearer realm="https://registry.example/token",service="ocireg"'
            )
    finally:
        await server.service.stopService()


@pytest_twisted.ensureDeferred
async def test_basic_on_the_registry_api_can_be_switched_off(tmp_path, database):
    server = await _start(tmp_path, database, auth_basic=False)
    try:
        response = await user(server, "alice").request("GET", "/v2/")
        await assert_oci_error(response, 401, "UNAUTHORIZED")
        token = (await _token(server, "alice", "repository:team/app:pull"))["token"]
        response = await bearer(server, token).request("GET", "/v2/")
        assert response.code == 200
        await response.content()
    finally:
        await server.service.stopService()


@pytest_twisted.ensureDeferred
async def test_without_a_token_service_the_challenge_is_basic(tmp_path, database):
    server = await _start(tmp_path, database, auth_token_service=False)
    try:
        response = await anonymous(server).request("GET", "/v2/")
        await assert_oci_error(response, 401, "UNAUTHORIZED")
        assert _challenge(response) == 'Basic realm="ocireg"'
        response = await user(server, "alice").request("GET", "/token")
        assert response.code == 404
        await response.content()
    finally:
        await server.service.stopService()


@pytest_twisted.ensureDeferred
async def test_tokens_of_a_trusted_external_issuer_are_accepted_for_what_they_grant(
    tmp_path, database,
):
    external = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [json.loads(jwt.algorithms.ECAlgorithm.to_jwk(external.public_key()))
                     | {"kid": "ext-1", "use": "sig", "alg": "ES256"}]}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    server = await _start(
        tmp_path, database, auth_trusted_issuer="https://auth.example",
        auth_trusted_keys=str(tmp_path / "jwks.json"),
    )
    try:
        claims = _claims(iss="https://auth.example", sub="erin")
        token = jwt.encode(claims, external, algorithm="ES256", headers={"kid": "ext-1"})
        image = make_image()
        await push_image(bearer(server, token), "team/app", image, "1")
        response = await bearer(server, token).request("GET", "/v2/secret/x/tags/list")
        await assert_oci_error(response, 401, "UNAUTHORIZED")
        forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                            headers={"kid": "ext-1"})
        response = await bearer(server, forged).request("GET", "/v2/team/app/manifests/1")
        await assert_oci_error(response, 401, "UNAUTHORIZED")
    finally:
        await server.service.stopService()


@pytest_twisted.ensureDeferred
async def test_with_auth_off_an_authorization_header_changes_nothing(server):
    response = await server.request("GET", "/v2/", headers={"Authorization": "Bearer junk"})
    assert response.code == 200
    await response.content()
    response = await server.request("GET", "/token")
    assert response.code == 404
    await response.content()


@pytest_twisted.ensureDeferred
async def test_an_htpasswd_file_with_other_hashes_stops_the_start_with_a_clear_message(tmp_path):
    from ocireg.auth.setup import open_auth
    from ocireg.config import ConfigError

    path = tmp_path / "htpasswd"
    path.write_text("bob:$apr1$abc$defghijklmnopqrstuvwx\n")
    config = Config(data_dir=str(tmp_path), auth_htpasswd=str(path))
    with pytest.raises(ConfigError, match="auth_htpasswd.*line 1.*'bob'.*only bcrypt"):
        await open_auth(config, reactor)


@pytest_twisted.ensureDeferred
async def test_command_logs_in_with_user_and_password(auth_server, monkeypatch):
    async def ocireg(*args: str, stdin: str = "") -> tuple[int, str]:
        out: list[str] = []
        err: list[str] = []
        code = await cli.run(["--url", auth_server.url, "--timeout", "10", *args],
                             cli.Output(out.append, err.append), io.StringIO(stdin))
        return code, "".join(out) + "".join(err)

    code, text = await ocireg("repo", "list")
    assert code != cli.EXIT_OK and "UNAUTHORIZED" in text
    code, _ = await ocireg("--user", "root", "--password-stdin", "repo", "list",
                           stdin="root-pw\n")
    assert code == cli.EXIT_OK
    monkeypatch.setenv("OCIREG_PASSWORD", "bob-pw")
    code, text = await ocireg("--user", "bob", "repo", "list")
    assert code == cli.EXIT_CONFLICT and "DENIED" in text
    monkeypatch.delenv("OCIREG_PASSWORD")
    code, text = await ocireg("--user", "bob", "repo", "list")
    assert code == cli.EXIT_USAGE and "OCIREG_PASSWORD" in text


@pytest_twisted.ensureDeferred
async def test_access_log_names_the_user_of_a_bearer_token(auth_server):
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        issued = await _token(auth_server, "bob", "repository:team/app:pull")
        response = await bearer(auth_server, issued["token"]).request(
            "GET", "/v2/team/app/tags/list?by-token"
        )
        await response.content()
        deadline = time.monotonic() + 5
        while not any(e.get("path", "").endswith("?by-token") for e in events):
            assert time.monotonic() < deadline, "no access log event"
            await sleep(0.05)
    finally:
        globalLogPublisher.removeObserver(events.append)
    (logged,) = [e for e in events if e.get("access") and e["path"].endswith("?by-token")]
    assert logged["user"] == "bob"
