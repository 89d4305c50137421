"""Reloading settings without a restart (SIGHUP).

Each part of the daemon that can apply a new value of a setting while it runs
registers a hook for that setting (today the log level; later the users and
their permissions, the garbage-collection schedule). A reload reads the
configuration again, runs the hooks of the settings that changed, and logs
what it applied and what needs a restart. A configuration that does not load
is refused whole, and the daemon goes on with what it had.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.logger import Logger

from ocireg.config import Config, ConfigError

_log = Logger()

#: Applies a setting's new value; says in a few words what changed.
Hook = Callable[[object, object], str]


@attrs.frozen
class ReloadResult:
    #: "setting: what changed", for each setting applied.
    applied: tuple[str, ...] = ()
    #: Settings that changed but take effect only on a restart.
    need_restart: tuple[str, ...] = ()
    #: Why the configuration was refused, if it was.
    error: str | None = None


class Reloader:
    """Keeps the running configuration and applies new values through the hooks."""

    def __init__(self, load: Callable[[], Config], running: Config) -> None:
        self._load = load
        self.running = running
        self._hooks: dict[str, list[Hook]] = {}

    def register(self, setting: str, hook: Hook) -> None:
        """Call `hook(old, new)` when `setting` changes on a reload."""
        known = {a.name for a in attrs.fields(Config)}
        if setting not in known:
            raise ValueError(f"no setting {setting!r} to reload")
        self._hooks.setdefault(setting, []).append(hook)

    def reload(self) -> ReloadResult:
        try:
            new = self._load()
        except ConfigError as e:
            _log.error("reload refused, the running configuration stays: {error}", error=str(e))
            return ReloadResult(error=str(e))
        changed = [
            a.name for a in attrs.fields(Config)
            if getattr(self.running, a.name) != getattr(new, a.name)
        ]
        applied: list[str] = []
        updates: dict[str, object] = {}
        for name in changed:
            if name not in self._hooks:
                continue
            old_value, new_value = getattr(self.running, name), getattr(new, name)
            try:
                descriptions = [hook(old_value, new_value) for hook in self._hooks[name]]
            except Exception:
                _log.failure("reloading {setting} failed; it keeps its value", setting=name)
                continue
            updates[name] = new_value
            applied.append(f"{name}: {'; '.join(descriptions)}")
        need_restart = tuple(name for name in changed if name not in self._hooks)
        self.running = attrs.evolve(self.running, **updates)
        if not changed:
            _log.info("reloaded the configuration: nothing changed")
        elif applied:
            # At warn, so that the news shows even when the reload itself raised
            # the log level past info.
            _log.warn("reloaded {applied}", applied=", ".join(applied))
        if need_restart:
            _log.warn(
                "changed settings that need a restart to take effect: {settings}",
                settings=", ".join(need_restart),
            )
        return ReloadResult(tuple(applied), need_restart)
