"""ocireg under twistd as systemd runs it: readiness, SIGTERM, SIGHUP, bad settings.

Each test runs a real `twistd --nodaemon --pidfile= ocireg` process on a
loopback port, bounds every wait, and stops the process it started.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ocireg.db.postgresql import START_TIMEOUT
from tests.support import (
    REPO_ROOT,
    RegistryProcess,
    free_port,
    ocireg_command,
    ocireg_environment,
    twistd_command,
    wait_for,
)

#: How long any one wait in these tests may take.
WAIT = 20.0

#: twistd re-raises the SIGTERM it stopped on once it is done, so a clean
#: stop ends "killed by SIGTERM"; systemd counts that as a clean exit.
STOPPED_CLEANLY = (0, -signal.SIGTERM)


def _write_config(path: Path, **settings: object) -> Path:
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()))
    return path


@pytest.fixture
def processes():
    """Every process a test starts, stopped after it whatever happens."""
    started: list[RegistryProcess] = []
    yield started
    for server in started:
        server.stop()


def _start(processes: list, server: RegistryProcess, *extra: str) -> RegistryProcess:
    processes.append(server)
    return server.start(*extra)


def _exit_code(server: RegistryProcess, timeout: float = WAIT) -> int:
    assert server.process is not None
    try:
        return server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"ocireg did not exit within {timeout} s:\n{server.log()}") from None


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# Readiness: the notify protocol


class NotifySocket:
    """A unix datagram socket of the test's own, standing in for systemd's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def receive(self, timeout: float = WAIT) -> dict[str, str]:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"no notification within {timeout} s") from None
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    def receive_until(self, key: str, timeout: float = WAIT) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        messages = []
        while True:
            messages.append(self.receive(max(deadline - time.monotonic(), 0.01)))
            if key in messages[-1]:
                return messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    # AF_UNIX paths are short (108 bytes): pytest's tmp_path may be longer.
    directory = Path("/tmp") / f"ocireg-notify-{os.getpid()}-{free_port()}"
    directory.mkdir()
    sock = NotifySocket(directory / "notify")
    yield sock
    sock.close()
    sock.path.unlink(missing_ok=True)
    directory.rmdir()


def test_ready_is_sent_only_once_the_port_serves_and_stopping_on_sigterm(
    tmp_path, notify_socket
):
    port = free_port()
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        twistd_command("--listen", f"tcp:{port}:interface=127.0.0.1", "--data-dir",
                       str(data_dir)),
        cwd=tmp_path, env={**ocireg_environment(), "NOTIFY_SOCKET": str(notify_socket.path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        messages = notify_socket.receive_until("READY")
        ready = messages[-1]
        assert ready["READY"] == "1"
        assert ready["MAINPID"] == str(process.pid)
        # No retry: when READY arrives the port already listens and the store is open.
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"] == {"metadata": "ok", "blobs": "ok", "free_space": "ok"}

        process.send_signal(signal.SIGTERM)
        stopping = notify_socket.receive_until("STOPPING")
        assert stopping[-1]["STOPPING"] == "1"
        assert process.wait(WAIT) in STOPPED_CLEANLY
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        process.stdout.close()


def test_no_notify_socket_means_no_notification_and_a_normal_start(tmp_path, processes):
    server = _start(processes, RegistryProcess(tmp_path / "data", command=twistd_command))
    assert _get(server.url + "/healthz")[0] == 200


# Graceful stop


def _open_upload(server: RegistryProcess, name: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 202
    return response.getheader("Location")


def _slow_patch(server: RegistryProcess, location: str, total: int, first: bytes) -> socket.socket:
    """A PATCH announcing `total` bytes, of which only `first` are sent (so far)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n"
        f"Content-Range: 0-{total - 1}\r\n\r\n".encode() + first
    )
    return sock


def _upload_file(server: RegistryProcess, location: str) -> Path:
    # The filesystem blob store keeps an upload's bytes in uploads/<uuid>.
    return server.data_dir / "uploads" / location.rsplit("/", 1)[1]


def _refuses_connections(server: RegistryProcess) -> bool:
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_an_upload_in_flight_finish_before_exiting(tmp_path, processes):
    config = _write_config(tmp_path / "ocireg.toml", shutdown_timeout=15)
    server = _start(processes, RegistryProcess(tmp_path / "data", command=twistd_command),
                    "--config", str(config))
    body = os.urandom(256 * 1024)
    location = _open_upload(server, "team/app")
    sock = _slow_patch(server, location, len(body), body[:100_000])
    with sock:
        wait_for(lambda: _upload_file(server, location).stat().st_size == 100_000,
                  "the first bytes to reach the upload", log=server.log)
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: _refuses_connections(server), "the port to stop accepting",
                  log=server.log)
        assert server.process.poll() is None, "exited with a request in flight"

        sock.sendall(body[100_000:])
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        assert response.status == 202, server.log()
        assert response.getheader("Range") == f"0-{len(body) - 1}"
    assert _exit_code(server) in STOPPED_CLEANLY
    assert _upload_file(server, location).read_bytes() == body


def test_upload_cut_off_by_sigterm_resumes_after_restart(tmp_path, processes):
    config = _write_config(tmp_path / "ocireg.toml", shutdown_timeout=1)
    first = RegistryProcess(tmp_path / "data", command=twistd_command)
    _start(processes, first, "--config", str(config))
    body = os.urandom(512 * 1024)
    sent = 200_000
    location = _open_upload(first, "team/app")
    with _slow_patch(first, location, len(body), body[:sent]):
        wait_for(lambda: _upload_file(first, location).stat().st_size == sent,
                  "the first bytes to reach the upload", log=first.log)
        started = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        assert _exit_code(first) in STOPPED_CLEANLY
        # It waited for the request (shutdown_timeout), then cut it off.
        assert time.monotonic() - started >= 0.9
    assert "cut off 1 requests" in first.log()

    second = RegistryProcess(tmp_path / "data", port=first.port, command=twistd_command)
    _start(processes, second, "--config", str(config))
    conn = http.client.HTTPConnection("127.0.0.1", second.port, timeout=10)
    conn.request("GET", location)
    status = conn.getresponse()
    status.read()
    assert status.status == 204
    assert status.getheader("Range") == f"0-{sent - 1}"

    conn.request("PATCH", location, body=body[sent:], headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{sent}-{len(body) - 1}",
    })
    patched = conn.getresponse()
    patched.read()
    assert patched.status == 202, second.log()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    conn.request("PUT", f"{location}?digest={digest}", body=b"")
    finished = conn.getresponse()
    finished.read()
    assert finished.status == 201, second.log()
    conn.request("GET", f"/v2/team/app/blobs/{digest}")
    blob = conn.getresponse()
    assert blob.read() == body
    conn.close()


# Reload


def test_sighup_applies_a_new_log_level_and_says_so(tmp_path, processes):
    config = _write_config(tmp_path / "ocireg.toml", log_level="info")
    server = _start(processes, RegistryProcess(tmp_path / "data", command=twistd_command),
                    "--config", str(config))
    _get(server.url + "/v2/?before-reload")
    wait_for(lambda: "/v2/?before-reload" in server.log(), "the access log line",
              log=server.log)

    _write_config(config, log_level="warn", shutdown_timeout=5)
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded log_level: log level info -> warn" in server.log(),
              "the reload to be logged", log=server.log)
    assert "settings that need a restart to take effect: shutdown_timeout" in server.log()
    _get(server.url + "/v2/?after-reload")
    # Info events (the access log) are now below the level: one more warning
    # shows that the log is still written, and the request was not.
    _write_config(config, log_level="loud")
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.log(), "the bad reload to be refused",
              log=server.log)
    log = server.log()
    assert "/v2/?after-reload" not in log
    assert "setting 'log_level' must be one of" in log
    assert _get(server.url + "/healthz")[0] == 200


# Bad settings


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"log_level": "loud"}, "'log_level'"),
        ({"shutdown_timeout": -1}, "'shutdown_timeout'"),
        ({"listen": ["tcpp:5000"]}, "'listen'"),
        ({"admin_listen": ["tcp:1:interface=203.0.113.9"]}, "'admin_listen'"),
    ],
)
def test_bad_setting_is_refused_at_start_naming_it_without_traceback(
    tmp_path, settings, named
):
    config = _write_config(
        tmp_path / "ocireg.toml",
        **{"listen": [f"tcp:{free_port()}:interface=127.0.0.1"], **settings},
    )
    result = subprocess.run(
        twistd_command("--config", str(config), "--data-dir", str(tmp_path / "data")),
        cwd=tmp_path, env=ocireg_environment(), capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert named in output, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("command", [twistd_command, ocireg_command],
                         ids=["twistd", "python-m-twisted"])
@pytest.mark.parametrize(
    ("failure", "named"),
    [
        ("data_dir under a file", "setting 'data_dir': cannot create"),
        ("data_dir under /proc", "setting 'data_dir': cannot create"),
        ("database refuses connections", "setting 'database': cannot connect"),
        ("database never answers", "setting 'database': cannot connect"),
        ("port in use", "setting 'listen': cannot listen"),
        ("missing TLS key files", "setting 'listen': bad endpoint"),
    ],
)
def test_a_failed_start_exits_non_zero_at_once_naming_the_setting(
    tmp_path, command, failure, named
):
    data_dir = tmp_path / "data"
    listen = f"tcp:{free_port()}:interface=127.0.0.1"
    args: list[str] = []
    held = None
    if failure == "data_dir under a file":
        (tmp_path / "a-file").write_text("")
        data_dir = tmp_path / "a-file" / "data"
    elif failure == "data_dir under /proc":
        data_dir = Path("/proc/ocireg-cannot-be-here/data")
    elif failure == "database refuses connections":
        args = ["--database", f"postgresql://ocireg@127.0.0.1:{free_port()}/ocireg"]
    elif failure == "database never answers":
        # Accepts connections (into its backlog) and never says a word.
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen()
        args = ["--database", f"postgresql://ocireg@127.0.0.1:{held.getsockname()[1]}/ocireg"]
    elif failure == "port in use":
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen()
        listen = f"tcp:{held.getsockname()[1]}:interface=127.0.0.1"
    else:
        missing = tmp_path / "missing.pem"
        listen = f"ssl:{free_port()}:interface=127.0.0.1:privateKey={missing}:certKey={missing}"
    started = time.monotonic()
    try:
        result = subprocess.run(
            command("--listen", listen, "--data-dir", str(data_dir), *args),
            cwd=tmp_path, env=ocireg_environment(), capture_output=True, text=True,
            timeout=WAIT,
        )
    finally:
        if held is not None:
            held.close()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # At once (or once a silent database has had its time): not after a
    # service manager's start timeout, nor on a signal.
    limit = START_TIMEOUT + 5 if failure == "database never answers" else WAIT / 2
    assert time.monotonic() - started < limit, output
    assert "Traceback" not in output, output
    assert named in output, output


# The data directory's lock


def _refused_start(tmp_path: Path, data_dir: Path, *args: str) -> str:
    """The output of an ocireg that must refuse to start on `data_dir`."""
    result = subprocess.run(
        ocireg_command("--listen", f"tcp:{free_port()}:interface=127.0.0.1",
                       "--data-dir", str(data_dir), *args),
        cwd=tmp_path, env=ocireg_environment(), capture_output=True, text=True, timeout=WAIT,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    return output


def test_a_second_ocireg_on_the_same_sqlite_data_dir_is_refused_naming_the_first(
    tmp_path, processes
):
    first = _start(processes, RegistryProcess(tmp_path / "data", command=twistd_command))
    output = _refused_start(tmp_path, first.data_dir)
    assert "setting 'data_dir'" in output
    assert f"in use by another ocireg process (PID {first.process.pid})" in output
    assert _get(first.url + "/healthz")[0] == 200

    first.stop()
    # The lock goes with the process: the next one starts.
    second = _start(processes, RegistryProcess(first.data_dir))
    assert _get(second.url + "/healthz")[0] == 200


def test_ocireg_processes_on_postgresql_share_a_data_dir_and_sqlite_is_kept_out(
    tmp_path, processes, pg
):
    data_dir = tmp_path / "data"
    on_pg = [
        _start(processes, RegistryProcess(data_dir), "--database", pg.dsn) for _ in range(2)
    ]
    assert all(_get(server.url + "/healthz")[0] == 200 for server in on_pg)
    output = _refused_start(tmp_path, data_dir)
    assert "setting 'data_dir'" in output
    assert "on PostgreSQL" in output
    assert any(f"PID {server.process.pid}" in output for server in on_pg), output

    for server in on_pg:
        server.stop()
    on_sqlite = _start(processes, RegistryProcess(data_dir))
    output = _refused_start(tmp_path, data_dir, "--database", pg.dsn)
    assert f"in use by another ocireg process (PID {on_sqlite.process.pid})" in output


# The units


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    import shutil

    analyze = shutil.which("systemd-analyze")
    twistd = shutil.which("twistd")
    if analyze is None or twistd is None:
        pytest.fail("systemd-analyze and twistd are needed (.ci/run installs systemd)")
    # Verified as installed: ExecStart's twistd must exist, so point it at this one.
    for unit in ("ocireg.service", "ocireg.socket"):
        text = (REPO_ROOT / "etc" / "systemd" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/opt/ocireg/bin/twistd", twistd))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "ocireg.service"), str(tmp_path / "ocireg.socket")],
        capture_output=True, text=True, timeout=60,
    )
    # verify exits 0 on unknown keys and bad values, but warns: none is allowed.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
