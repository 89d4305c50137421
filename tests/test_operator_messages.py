"""What an operator reads: response headers that name no software version, a reload
that changed nothing saying so, and a database that cannot be reached at start-up as
one clear line (its traceback only at debug)."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from ocireg.config import Config
from ocireg.reload import Reloader
from tests.support import REPO_ROOT, RegistryProcess, free_port, ocireg_environment, twistd_command


@pytest.fixture
def processes():
    started: list[RegistryProcess] = []
    yield started
    for server in started:
        server.stop()


def _headers(url: str, method: str = "GET") -> dict[str, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return dict(response.headers)
    except urllib.error.HTTPError as e:
        e.read()
        return dict(e.headers)


def test_no_response_names_the_server_software(tmp_path, processes):
    admin = free_port()
    server = RegistryProcess(tmp_path / "data").start(
        "--admin-listen", f"tcp:{admin}:interface=127.0.0.1"
    )
    processes.append(server)
    urls = [server.url + path for path in (
        "/v2/", "/v2/team/app/tags/list", "/v2/team/app/blobs/sha256:" + "0" * 64, "/nowhere",
        "/api/v1/repositories/", "/healthz",
    )] + [f"http://127.0.0.1:{admin}{path}" for path in ("/metrics", "/readyz", "/nowhere")]
    for url in urls:
        for method in ("GET", "HEAD"):
            headers = {k.lower(): v for k, v in _headers(url, method).items()}
            assert "server" not in headers, (method, url, headers.get("server"))
            assert "date" in headers, (method, url)


@pytest.fixture
def events():
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def test_a_reload_that_changes_nothing_says_nothing_changed_without_a_warning(events):
    reloader = Reloader(lambda: Config(log_level="warn"), Config(log_level="warn"))
    reloader.register("log_level", lambda old, new: "changed")
    result = reloader.reload()
    assert (result.applied, result.need_restart, result.error) == ((), (), None)
    said = [(e["log_level"], formatEvent(e)) for e in events
            if e.get("log_namespace") == "ocireg.reload"]
    assert said == [(LogLevel.info, "reloaded the configuration: nothing changed")]


def test_a_reload_that_changes_only_restart_settings_names_them_and_claims_no_reload(events):
    reloader = Reloader(lambda: Config(shutdown_timeout=5), Config())
    reloader.register("log_level", lambda old, new: "changed")
    reloader.reload()
    said = [formatEvent(e) for e in events if e.get("log_namespace") == "ocireg.reload"]
    assert said == ["changed settings that need a restart to take effect: shutdown_timeout"]


def _start_without_database(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    closed = free_port()
    return subprocess.run(
        twistd_command(
            "--listen", f"tcp:{free_port()}:interface=127.0.0.1",
            "--data-dir", str(tmp_path / "data"),
            "--database", f"postgresql://ocireg:pw@127.0.0.1:{closed}/registry", *extra,
        ),
        env=ocireg_environment(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )


def test_an_unreachable_database_at_start_up_is_one_line_and_its_traceback_at_debug(tmp_path):
    failed = _start_without_database(tmp_path)
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output
    assert "Traceback" not in output
    reasons = [line for line in output.splitlines() if "cannot connect to" in line]
    assert len(reasons) == 1, output
    assert "[ocireg.service#critical] ocireg cannot start: setting 'database': " in reasons[0]
    assert ":pw@" not in output

    debugged = _start_without_database(tmp_path, "--log-level", "debug")
    output = debugged.stdout + debugged.stderr
    assert debugged.returncode == 1, output
    assert "[ocireg.stores#debug] opening the database at start-up" in output
    assert "Traceback" in output
    assert ":pw@" not in output
