"""Who is acting. The protocol's audit (ISP §14.3) must say which person ingested, delivered, suspended
or deleted what. The login name says nothing under ``kubectl exec`` or ``docker compose run`` (it is
always the image's user), so every command that changes something needs a named actor: ``sais
--actor NAME`` or ``SAIS_ACTOR``. Long-running services act as themselves (``delivery-scheduler``, …)
and never read this."""

from __future__ import annotations

import os
import unicodedata

from .errors import ConfigurationError

MAX_ACTOR_LENGTH = 200
_given: dict[str, str | None] = {"actor": None}


class ActorRequiredError(ConfigurationError):
    """A command that changes something was run without naming the person running it."""


class ActorInvalidError(ConfigurationError):
    """The actor given is blank, too long, or holds control characters."""


def set_actor(name: str | None) -> None:
    """The actor named on the command line (``--actor``), checked now so a typo fails before any work."""
    _given["actor"] = None if name is None else _checked(name)


def actor() -> str:
    """The named person running this command; raises ActorRequiredError when there is none."""
    name = _given["actor"] or os.environ.get("SAIS_ACTOR")
    if not name:
        raise ActorRequiredError(
            "this command changes something and the audit trail (ISP §14.3) must say who did it: "
            "name yourself with --actor NAME or SAIS_ACTOR (a person, not a shared account)"
        )
    return _checked(name)


def _checked(name: str) -> str:
    name = name.strip()
    if not name:
        raise ActorInvalidError("--actor / SAIS_ACTOR is blank: name the person running the command")
    if len(name) > MAX_ACTOR_LENGTH:
        raise ActorInvalidError(f"--actor / SAIS_ACTOR is longer than {MAX_ACTOR_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ActorInvalidError("--actor / SAIS_ACTOR holds a control character")
    return name


__all__ = ["ActorInvalidError", "ActorRequiredError", "actor", "set_actor"]
