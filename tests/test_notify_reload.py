"""The notify protocol's datagrams, and what a reload keeps and applies."""

from __future__ import annotations

import os
import socket

from ocireg.config import Config, ConfigError
from ocireg.notify import SystemdNotifier
from ocireg.reload import Reloader


def _receive(sock: socket.socket) -> dict[str, str]:
    sock.settimeout(5)
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_notifier_sends_ready_with_its_pid_to_an_abstract_socket():
    name = f"ocireg-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("serving")
        assert _receive(sock) == {"READY": "1", "STATUS": "serving", "MAINPID": str(os.getpid())}
        assert notifier.stopping("bye")
        assert _receive(sock) == {"STOPPING": "1", "STATUS": "bye"}


def test_notifier_without_a_socket_sends_nothing():
    assert not SystemdNotifier.from_environment({}).ready("serving")


def test_notifier_whose_socket_is_gone_reports_it_without_raising(tmp_path):
    assert not SystemdNotifier(str(tmp_path / "absent")).ready("serving")


def test_reload_applies_hooked_settings_and_only_names_the_others():
    files = [Config(), Config(log_level="debug", shutdown_timeout=5)]
    reloader = Reloader(lambda: files[-1], files[0])
    applied = []
    reloader.register("log_level", lambda old, new: applied.append((old, new)) or "changed")
    result = reloader.reload()
    assert applied == [("info", "debug")]
    assert result.applied == ("log_level: changed",)
    assert result.need_restart == ("shutdown_timeout",)
    # What needs a restart is not taken as running.
    assert reloader.running == Config(log_level="debug")


def test_reload_of_a_bad_configuration_keeps_the_running_one():
    def load() -> Config:
        raise ConfigError("setting 'log_level' must be one of …")

    reloader = Reloader(load, Config(log_level="warn"))
    reloader.register("log_level", lambda old, new: "changed")
    result = reloader.reload()
    assert result.error is not None and "log_level" in result.error
    assert reloader.running == Config(log_level="warn")
