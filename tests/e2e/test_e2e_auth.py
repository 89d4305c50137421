"""Real clients against a registry with authentication: skopeo and podman log in, push, pull.

The token flow (Bearer challenge, ocireg's /token) and plain Basic; an
anonymous pull where a rule allows it and a refusal where none does; a user
without push refused; a push over TLS with the self-signed certificate as
the trusted CA.
"""

from __future__ import annotations

import json

import pytest

from tests.auth_helpers import GROUPS, PASSWORDS, RULES, write_htpasswd
from tests.support import RegistryProcess, free_port, self_signed

from .clients import ClientError
from .oci_layout import OCILayout

pytestmark = pytest.mark.e2e


def _toml_value(value) -> str:
    return json.dumps(value)


def _config(tmp_path, **settings) -> str:
    """A config file with the test users and rules, and `settings`."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    lines = [f"auth_htpasswd = {_toml_value(str(htpasswd))}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
    lines.append("[auth_groups]")
    lines += [f"{group} = {_toml_value(users)}" for group, users in GROUPS.items()]
    for rule in RULES:
        lines.append("[[auth_rules]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in rule.items()]
    path = tmp_path / "ocireg.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def start_registry(tmp_path):
    """Start an ocireg process with auth on; stopped after the test."""
    started: list[RegistryProcess] = []

    def start(*extra: str, **settings) -> RegistryProcess:
        process = RegistryProcess(tmp_path / f"data-{len(started)}")
        started.append(process)
        return process.start("--config", _config(tmp_path, **settings), *extra)

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def _login(client, registry: RegistryProcess, name: str, tmp_path) -> None:
    """`client login` as `name`, into an auth file of the client's own."""
    client.env["REGISTRY_AUTH_FILE"] = str(tmp_path / f"auth-{id(client)}.json")
    client("login", "--tls-verify=false", "-u", name, "-p", PASSWORDS[name], registry.host)


def _logout(client) -> None:
    client.env["REGISTRY_AUTH_FILE"] = client.env["REGISTRY_AUTH_FILE"] + ".none"


def _refused(error: ClientError) -> str:
    return (error.stderr + error.stdout).lower()


@pytest.mark.parametrize("token_service", [True, False], ids=["token", "basic"])
def test_skopeo_logs_in_pushes_and_pulls_and_a_puller_cannot_push(
    start_registry, skopeo, tmp_path, token_service
):
    registry = start_registry(auth_token_service=token_service)
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1")
    ref = f"docker://{registry.host}/team/app:1"

    with pytest.raises(ClientError) as anonymous_push:
        skopeo.push(layout.ref("v1"), ref)
    assert "unauthorized" in _refused(anonymous_push.value)

    _login(skopeo, registry, "alice", tmp_path)
    assert skopeo.push(layout.ref("v1"), ref) == image.digest
    assert skopeo.manifest_digest(ref) == image.digest

    _login(skopeo, registry, "bob", tmp_path)
    pulled = skopeo.pull_oci(ref, tmp_path / "pulled")
    assert pulled.digest == image.digest
    other = layout.add_image("v2")
    with pytest.raises(ClientError) as denied:
        skopeo.push(layout.ref("v2"), f"docker://{registry.host}/team/app:2")
    assert "denied" in _refused(denied.value)
    del other


def test_anonymous_pull_where_a_rule_allows_it_and_a_refusal_where_not(
    start_registry, skopeo, tmp_path
):
    registry = start_registry()
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1")
    _login(skopeo, registry, "root", tmp_path)
    skopeo.push(layout.ref("v1"), f"docker://{registry.host}/public/base:1")
    skopeo.push(layout.ref("v1"), f"docker://{registry.host}/team/app:1")
    _logout(skopeo)

    assert skopeo.manifest_digest(f"docker://{registry.host}/public/base:1") == image.digest
    with pytest.raises(ClientError) as refused:
        skopeo.inspect_raw(f"docker://{registry.host}/team/app:1")
    assert "unauthorized" in _refused(refused.value)


def test_podman_logs_in_with_tokens_pushes_and_pulls(start_registry, podman, tmp_path):
    registry = start_registry()
    layout = OCILayout(tmp_path / "layout")
    layout.add_image("v1")
    podman.load_layout(layout.ref("v1"), "localhost/app:v1")
    _login(podman, registry, "alice", tmp_path)
    digest = podman.push("localhost/app:v1", f"{registry.host}/alice/app:1")
    podman.rmi("localhost/app:v1")
    podman.pull(f"{registry.host}/alice/app:1")
    assert digest.startswith("sha256:")
    _login(podman, registry, "bob", tmp_path)
    with pytest.raises(ClientError):
        podman.pull(f"{registry.host}/alice/app:1")



def test_skopeo_pushes_over_tls_trusting_the_self_signed_certificate(
    start_registry, skopeo, tmp_path
):
    key, certificate = self_signed(tmp_path)
    tls_port = free_port()
    registry = start_registry(
        "--listen", f"ssl:{tls_port}:interface=127.0.0.1:privateKey={key}:certKey={certificate}",
    )
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(certificate.read_bytes())
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1")
    host = f"127.0.0.1:{tls_port}"
    skopeo.env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    skopeo("login", "--cert-dir", certs, "-u", "alice", "-p", PASSWORDS["alice"], host)
    skopeo(
        "copy", "--dest-cert-dir", certs, layout.ref("v1"), f"docker://{host}/team/tls:1",
    )
    raw = skopeo("inspect", "--raw", "--cert-dir", certs, f"docker://{host}/team/tls:1").stdout
    assert json.loads(raw)["config"]["digest"] == image.config_digest
    # Without the certificate as CA, skopeo refuses the server.
    with pytest.raises(ClientError) as untrusted:
        skopeo("inspect", "--raw", f"docker://{host}/team/tls:1")
    assert "certificate" in _refused(untrusted.value)
    del registry


@pytest.mark.parametrize("token_service", [True, False], ids=["token", "basic"])
def test_docker_logs_in_pushes_and_pulls(start_registry, docker, tmp_path, token_service):
    registry = start_registry(auth_token_service=token_service)
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1")
    ref = f"{registry.host}/team/docker-auth:1"
    docker.load_layout(layout.ref("v1"), ref)

    with pytest.raises(ClientError) as anonymous_push:
        docker.push(ref)
    refusal = _refused(anonymous_push.value)
    assert "no basic auth credentials" in refusal or "unauthorized" in refusal

    docker("login", "-u", "alice", "-p", PASSWORDS["alice"], registry.host)
    pushed = docker.push(ref)
    docker.rmi(ref)
    docker.pull(ref)
    assert docker.image_id(ref) == image.config_digest
    assert docker.repo_digests(ref) == [f"{registry.host}/team/docker-auth@{pushed.digest}"]
    docker.rmi(ref)
