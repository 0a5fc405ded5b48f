"""The ``sais`` CLI's exit codes: what a script or an operator should do next.

| code | meaning | what to do |
|---|---|---|
| 0 | done | nothing |
| 1 | a check found problems (check-mavis, audit verify, …) | read the report |
| 2 | bad input: an option, a file, an actor | correct the command; nothing was changed |
| 3 | refused by the protocol, or needs attention | read the message; an operator decides |
| 4 | a send may or may not have arrived | `sais delivery status`, then `sais delivery resolve` |
| 5 | transient: a server could not be reached or timed out | the same command again later |
| 6 | nothing to deliver | nothing |
| 7 | permanent: the same command cannot succeed until something is fixed | fix the setting, key, login or certificate it names, or the message the mail server refused |
| 70 | internal error (a defect) | report it, with the log (`--log-format json`) |
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    DONE = 0
    CHECK_FAILED = 1
    BAD_INPUT = 2
    REFUSED = 3
    UNCERTAIN = 4
    TRANSIENT = 5
    NOTHING = 6
    PERMANENT = 7
    INTERNAL = 70


__all__ = ["Exit"]
