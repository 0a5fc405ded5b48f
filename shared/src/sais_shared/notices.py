"""What a person running a command must read, as opposed to what a log records: the ``sais`` CLI
shows each notice once, in plain words, in the command's own output; a long-running service has no
sink (its log line says the same)."""

from __future__ import annotations

from collections.abc import Callable

_sink: dict[str, Callable[[str], None] | None] = {"fn": None}
_seen: set[str] = set()


def set_sink(fn: Callable[[str], None] | None) -> None:
    _sink["fn"] = fn
    _seen.clear()


def notify(key: str, text: str) -> None:
    """Show ``text`` to the person at the command, once per ``key`` per process."""
    fn = _sink["fn"]
    if fn is not None and key not in _seen:
        _seen.add(key)
        fn(text)
