"""The `ocireg` command when reaching the registry goes wrong: a URL without a scheme, no
answer in time, a URL with a path, credentials missing, a certificate not trusted.
Each ends with one line naming the fix and the exit code README lists, never a traceback."""

from __future__ import annotations

import io
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor

from ocireg import cli
from ocireg.config import Config
from ocireg.service import RegistryService
from tests.auth_helpers import GROUPS, RULES, write_htpasswd
from tests.conftest import InProcessServer
from tests.support import self_signed


async def ocireg(*args: str, stdin=None) -> tuple[int, str, str]:
    out: list[str] = []
    err: list[str] = []
    kwargs = {} if stdin is None else {"stdin": stdin}
    code = await cli.run(list(args), cli.Output(out.append, err.append), **kwargs)
    return code, "".join(out), "".join(err)


def one_line(err: str, *texts: str) -> None:
    assert err.startswith("ocireg: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in texts:
        assert text in err, (text, err)


async def _serve(tmp_path, listen: str, **settings) -> InProcessServer:
    config = Config(listen=(listen,), data_dir=str(tmp_path / "data"), **settings)
    service = RegistryService(config, reactor)
    service.startService()
    ports = await service.ready
    return InProcessServer(service, ports[0])


@pytest_twisted.async_yield_fixture
async def plain(tmp_path):
    server = await _serve(tmp_path, "tcp:0:interface=127.0.0.1")
    try:
        yield server
    finally:
        await server.service.stopService()



@pytest_twisted.async_yield_fixture
async def tls(tmp_path):
    key, cert = (str(path) for path in self_signed(tmp_path))
    server = await _serve(tmp_path, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    server.url = server.url.replace("http://", "https://")
    server.cacert = cert
    try:
        yield server
    finally:
        await server.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_url_without_a_scheme_is_a_usage_error_that_suggests_one():
    code, out, err = await ocireg("--url", "127.0.0.1:5640", "repo", "list")
    assert (code, out) == (cli.EXIT_USAGE, "")
    one_line(err, "did you mean http://127.0.0.1:5640?")


@pytest_twisted.ensureDeferred
async def test_a_registry_that_does_not_answer_in_time_is_timed_out_exit_5():
    with socket.socket() as silent:
        # Accepted by the kernel, never answered: the wait is for the response.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code, out, err = await ocireg("--url", url, "--timeout", "0.3", "repo", "list")
    assert (code, out) == (cli.EXIT_UNREACHABLE, "")
    one_line(err, "timed out", "0.3 s")


@pytest_twisted.ensureDeferred
async def test_a_connection_not_made_in_time_is_timed_out_exit_5():
    with socket.socket() as full:
        # A listen queue that is full drops further SYNs: the connect itself hangs.
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        address = full.getsockname()
        queued = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(address)
            queued.append(s)
        try:
            code, out, err = await ocireg(
                "--url", "http://{}:{}".format(*address), "--timeout", "0.3", "repo", "list")
        finally:
            for s in queued:
                s.close()
    assert (code, out) == (cli.EXIT_UNREACHABLE, "")
    one_line(err, "timed out")


@pytest_twisted.ensureDeferred
async def test_a_url_with_a_path_gets_404_as_not_found_with_a_hint(plain):
    code, out, err = await ocireg("--url", plain.url + "/v2/", "repo", "list")
    assert (code, out) == (cli.EXIT_NOT_FOUND, "")
    one_line(err, "404", "is --url the registry's address")


@pytest.fixture
def htpasswd(tmp_path):
    return str(write_htpasswd(tmp_path / "htpasswd"))


@pytest_twisted.async_yield_fixture
async def guarded(tmp_path, htpasswd):
    server = await _serve(tmp_path, "tcp:0:interface=127.0.0.1", auth_htpasswd=htpasswd,
                          auth_rules=RULES, auth_groups=GROUPS)
    try:
        yield server
    finally:
        await server.service.stopService()


@pytest_twisted.ensureDeferred
async def test_401_says_how_to_log_in_and_a_refused_password_says_so(guarded, monkeypatch):
    monkeypatch.delenv("OCIREG_USER", raising=False)
    code, out, err = await ocireg("--url", guarded.url, "repo", "list")
    assert (code, out) == (cli.EXIT_CONFLICT, "")
    one_line(err, "UNAUTHORIZED", "--user USER", "--password-stdin")

    code, out, err = await ocireg("--url", guarded.url, "--user", "root", "--password-stdin",
                                  "repo", "list", stdin=_lines("wrong-pw\n"))
    assert code == cli.EXIT_CONFLICT
    one_line(err, "refused the user and password")

    code, out, err = await ocireg("--url", guarded.url, "--user", "root", "--password-stdin",
                                  "repo", "list", stdin=_lines("root-pw\n"))
    assert (code, err) == (0, "")


def _lines(text: str) -> io.StringIO:
    return io.StringIO(text)


@pytest_twisted.ensureDeferred
async def test_a_self_signed_certificate_is_named_with_the_options_that_accept_it(tls):
    code, out, err = await ocireg("--url", tls.url, "repo", "list")
    assert (code, out) == (cli.EXIT_UNREACHABLE, "")
    one_line(err, "TLS failed", "certificate verify failed", "--cacert FILE", "--insecure")

    code, out, err = await ocireg("--url", tls.url, "--cacert", tls.cacert, "repo", "list")
    assert (code, err) == (0, "")
    assert out.split() == ["NAME", "LATEST", "TAGS", "MANIFESTS", "SIZE", "UNIQUE"]

    code, out, err = await ocireg("--url", tls.url, "repo", "list", "--insecure")
    assert (code, err) == (0, "")


@pytest_twisted.ensureDeferred
async def test_a_cacert_file_without_a_certificate_is_a_usage_error(tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    code, _, err = await ocireg("--url", "https://127.0.0.1:1", "--cacert", str(empty),
                                "repo", "list")
    assert code == cli.EXIT_USAGE
    one_line(err, "no PEM certificate")
    code, _, err = await ocireg("--url", "https://127.0.0.1:1", "--cacert",
                                str(tmp_path / "missing.pem"), "repo", "list")
    assert code == cli.EXIT_USAGE
    one_line(err, "missing.pem")
