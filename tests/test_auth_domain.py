"""The auth domain without HTTP: rules, htpasswd files, the login throttle, tokens, uploads."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ocireg.auth.ownership import UploadOwnership
from ocireg.auth.permissions import Permissions, Rule, RuleError
from ocireg.auth.throttle import LoginThrottle, Throttled
from ocireg.auth.tokens import (
    Access,
    SigningKey,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    TrustedIssuer,
    parse_scopes,
)
from ocireg.auth.users import HtpasswdError, cost_of, parse_htpasswd
from ocireg.config import Config, ConfigError
from tests.auth_helpers import htpasswd_line


def _permissions(*tables, groups=(), own_namespace=True) -> Permissions:
    return Permissions(tuple(Rule.from_table(t) for t in tables), groups, own_namespace)


def test_star_stays_in_one_segment_and_double_star_crosses_them():
    p = _permissions({"users": ["a"], "repositories": ["team/*"], "actions": ["pull"]},
                     {"users": ["b"], "repositories": ["team/**"], "actions": ["pull"]},
                     own_namespace=False)
    assert p.allows("a", "team/app", "pull")
    assert not p.allows("a", "team/app/api", "pull")
    assert not p.allows("a", "teamx/app", "pull")
    assert p.allows("b", "team/app/api", "pull")


def test_push_brings_pull_admin_brings_everything_and_nothing_else_is_implied():
    p = _permissions({"users": ["a"], "repositories": ["x"], "actions": ["push"]},
                     {"users": ["r"], "repositories": ["**"], "actions": ["admin"]},
                     own_namespace=False)
    assert p.actions("a", "x") == {"pull", "push"}
    assert p.actions("r", "any/thing") == {"pull", "push", "delete", "admin"}
    assert p.is_admin("r") and not p.is_admin("a") and not p.is_admin(None)


def test_groups_every_user_anonymous_and_own_namespace():
    p = _permissions({"groups": ["dev"], "repositories": ["team/**"], "actions": ["pull"]},
                     {"users": ["*"], "repositories": ["shared/*"], "actions": ["pull"]},
                     {"anonymous": True, "repositories": ["public/*"], "actions": ["pull"]},
                     groups=(("dev", ("bob",)),))
    assert p.allows("bob", "team/app", "pull") and not p.allows("eve", "team/app", "pull")
    assert p.allows("eve", "shared/x", "pull") and not p.allows(None, "shared/x", "pull")
    assert p.allows(None, "public/x", "pull") and p.allows("eve", "public/x", "pull")
    assert p.allows("eve", "eve/app", "push") and not p.allows("eve", "bob/app", "push")
    assert not attrs_evolve_own(p).allows("eve", "eve/app", "push")


def attrs_evolve_own(p: Permissions) -> Permissions:
    return Permissions(p.rules, p.groups, own_namespace=False)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"repositories": ["x"], "actions": ["pull"]}, "names nobody"),
        ({"users": ["a"], "actions": ["pull"]}, "needs repositories"),
        ({"users": ["a"], "repositories": ["x"], "actions": ["fly"]}, "unknown action 'fly'"),
        ({"anonymous": True, "repositories": ["x"], "actions": ["push"]}, "only be granted pull"),
        ({"users": ["a"], "repositories": ["x"], "actions": ["pull"], "colour": 1},
         "unknown key 'colour'"),
    ],
)
def test_malformed_rules_are_refused_at_start_up_naming_the_rule(table, message):
    with pytest.raises(ConfigError, match=message) as e:
        Config(auth_htpasswd="x", auth_rules=[table])
    assert "auth_rules[0]" in str(e.value)
    with pytest.raises(RuleError):
        Rule.from_table(table)


def test_bcrypt_htpasswd_is_read_and_other_hashes_are_refused_by_line():
    users = parse_htpasswd("# users\n" + htpasswd_line("alice", "pw") + "\n")
    assert users.names == ("alice",)
    for line, kind in [
        ("bob:$apr1$abc$defghijklmnopqrstuvwx", "Apache MD5"),
        ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
        ("bob:plaintext", "plain-text"),
    ]:
        with pytest.raises(HtpasswdError, match=f"line 2: .*'bob'.*{kind}.*only bcrypt"):
            parse_htpasswd(htpasswd_line("alice", "pw") + line + "\n", "htpasswd")


def _guess(throttle: LoginThrottle, user: str, address: str, ok: bool = False) -> None:
    attempt = throttle.begin(user, address)
    attempt.done(ok)


def test_failed_logins_are_limited_per_user_and_address_and_then_forgotten():
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=3, window=60)
    for _ in range(3):
        _guess(throttle, "alice", "10.0.0.1")
    with pytest.raises(Throttled) as e:
        throttle.begin("alice", "10.0.0.1")
    assert 0 < e.value.retry_after <= 60
    clock.advance(61)
    _guess(throttle, "alice", "10.0.0.1", ok=True)


def test_someone_elses_failures_never_refuse_a_user_elsewhere_or_another_user_here():
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=5, window=60, address_attempts=20)
    for _ in range(5):
        _guess(throttle, "root", "10.0.0.1")
    # The same user from another address, another user from the same address.
    assert throttle.begin("root", "10.0.0.2").delay == 0
    assert throttle.begin("alice", "10.0.0.1").delay == 0


def test_an_address_past_its_limit_is_slowed_down_not_refused():
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=5, window=60, address_attempts=10, queue=100)
    for n in range(10):
        _guess(throttle, f"user{n}", "10.0.0.1")
    delays = []
    for _ in range(3):
        attempt = throttle.begin("alice", "10.0.0.1")
        delays.append(attempt.delay)
        attempt.done(False)
    # One attempt per window / address_attempts seconds, each waiting its turn.
    assert delays == [0, 6, 12]
    assert throttle.begin("bob", "10.0.0.2").delay == 0


def test_an_attempt_counts_before_it_is_checked():
    throttle = LoginThrottle(Clock(), attempts=5, window=60, queue=100)
    admitted = []
    for _ in range(60):
        try:
            admitted.append(throttle.begin("alice", "10.0.0.1"))
        except Throttled:
            pass
    assert len(admitted) == 5


def test_checks_waiting_are_bounded_per_address_and_in_total():
    throttle = LoginThrottle(Clock(), attempts=5, window=60, queue=3, queue_total=5)
    for n in range(3):
        throttle.begin(f"user{n}", "10.0.0.1")
    with pytest.raises(Throttled):
        throttle.begin("alice", "10.0.0.1")
    throttle.begin("alice", "10.0.0.2")
    last = throttle.begin("bob", "10.0.0.3")
    with pytest.raises(Throttled):
        throttle.begin("carol", "10.0.0.4")
    last.done(True)
    throttle.begin("carol", "10.0.0.4")


def test_a_success_forgets_that_users_failures_from_that_address():
    throttle = LoginThrottle(Clock(), attempts=3, window=60)
    for _ in range(2):
        _guess(throttle, "alice", "10.0.0.1")
    _guess(throttle, "alice", "10.0.0.1", ok=True)
    for _ in range(2):
        _guess(throttle, "alice", "10.0.0.1")
    throttle.begin("alice", "10.0.0.1")


def test_an_ipv6_client_is_one_address_per_64_prefix():
    throttle = LoginThrottle(Clock(), attempts=50, window=60, address_attempts=3, queue=100)
    for n in range(3):
        _guess(throttle, "alice", f"2001:db8::{n + 1}")
    delays = [throttle.begin("bob", "2001:db8::ffff").delay for _ in range(2)]
    assert delays[1] > 0
    delays = [throttle.begin("bob", "2001:db8:0:1::1").delay for _ in range(2)]
    assert delays == [0, 0]


def test_the_throttle_table_stays_bounded_in_entries_and_bytes_and_expires():
    import tracemalloc

    clock = Clock()
    throttle = LoginThrottle(clock, attempts=5, window=60, capacity=2000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20_000):
            _guess(throttle, f"{n:0>250}", f"10.{n % 250}.{n // 250 % 250}.1")
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(throttle) <= 2000
    # A key is a fixed-size hash: 20,000 names of 250 bytes are not kept.
    assert used < 2000 * 600
    clock.advance(61)
    _guess(throttle, "alice", "10.0.0.1", ok=True)
    assert len(throttle) <= 2


def test_scopes_parse_including_names_with_ports_and_resource_classes():
    assert parse_scopes(["repository:team/app:pull,push registry:catalog:*",
                         "repository(plugin):x:pull"]) == (
        Access("repository", "team/app", ("pull", "push")),
        Access("registry", "catalog", ("*",)),
        Access("repository", "x", ("pull",)),
    )
    with pytest.raises(ValueError):
        parse_scopes(["nonsense"])


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_issued_tokens_verify_and_expire(algorithm):
    key = SigningKey.generate(algorithm)
    issuer = TokenIssuer(key, "ocireg", "svc", ttl=60)
    verifier = TokenVerifier("svc", (TrustedIssuer("ocireg", ((key.kid, key.public_key),)),))
    granted = (Access("repository", "team/app", ("pull",)),)
    issued = issuer.issue("alice", granted, now=1000.0)
    import time

    now = time.time()
    fresh = issuer.issue("alice", granted, now)
    verified = verifier.verify(fresh.token, now)
    assert verified.subject == "alice" and verified.grants("repository", "team/app", "pull")
    assert not verified.grants("repository", "team/app", "push")
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(issued.token, now)
    with pytest.raises(TokenError, match="another service"):
        TokenVerifier("other", verifier.issuers).verify(fresh.token, now)


def test_an_upload_id_is_owned_by_its_opener_only():
    ownership = UploadOwnership(b"s" * 32)
    upload = ownership.new_id("alice")
    assert ownership.owns(upload, "alice")
    assert not ownership.owns(upload, "bob")
    assert not ownership.owns(upload, "")
    assert not UploadOwnership(b"t" * 32).owns(upload, "alice")
    assert not ownership.owns("0f5e4a3c-not-one-of-ours", "alice")


def test_auth_settings_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="go together"):
        Config(auth_trusted_issuer="x")
    with pytest.raises(ConfigError, match="auth_token_path"):
        Config(auth_token_path="/v2/token")
    with pytest.raises(ConfigError, match="no way to log in"):
        Config(auth_htpasswd="x", auth_basic=False, auth_token_service=False)


def test_the_hash_an_unknown_user_is_checked_against_costs_what_the_files_hashes_cost():
    import bcrypt

    def line(user: str, cost: int) -> str:
        return f"{user}:{bcrypt.hashpw(b'pw', bcrypt.gensalt(cost)).decode()}\n"

    users = parse_htpasswd(line("a", 5) + line("b", 5) + line("c", 4))
    assert cost_of(users.dummy) == 5
    assert not bcrypt.checkpw(b"", users.dummy)
    users = parse_htpasswd(line("a", 6))
    assert cost_of(users.dummy) == 6


def test_a_password_is_checked_as_htpasswd_checks_it_on_its_first_72_bytes():
    import bcrypt

    from ocireg.auth.users import _checkpw

    password = b"p" * 100
    hashed = bcrypt.hashpw(password[:72], bcrypt.gensalt(4))
    assert _checkpw(password, hashed)
    assert _checkpw(password[:72], hashed)
    assert not _checkpw(password[:71], hashed)


@pytest.mark.parametrize("realm", ["registry.example/token", "ftp://registry.example/token",
                                   "https:///token", 'https://r.example/token"x',
                                   "https://r.example/to ken", "https://r.example/t#x"])
def test_an_auth_realm_that_is_no_http_url_is_refused(realm):
    with pytest.raises(ConfigError, match="auth_realm"):
        Config(auth_htpasswd="x", auth_realm=realm)


def test_an_auth_realm_url_is_accepted():
    assert Config(auth_realm="https://registry.example:8443/token").auth_realm == (
        "https://registry.example:8443/token"
    )


def test_failures_count_even_when_a_full_table_pushed_them_out_during_the_check():
    throttle = LoginThrottle(Clock(), attempts=3, window=60, capacity=4, queue=100,
                             queue_total=100)
    checking = [throttle.begin("alice", "10.0.0.1") for _ in range(2)]
    for n in range(10):
        _guess(throttle, f"user{n}", f"10.1.0.{n}")
    # A third guess, counted afresh: the table forgot the two being checked.
    throttle.begin("alice", "10.0.0.1")
    for attempt in checking:
        attempt.done(False)
    with pytest.raises(Throttled):
        throttle.begin("alice", "10.0.0.1")
