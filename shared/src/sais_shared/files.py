"""Files the CLI writes that hold personal data or keys (reports, SAR exports, key exports)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SaisError


class OutputFileError(SaisError):
    """An output file could not be created safely (it exists, or is a symbolic link)."""


def write_private_file(path: Path, text: str) -> None:
    """Create ``path`` new, owner-only (0600), never following a symbolic link, and write ``text``.

    An existing file is refused rather than overwritten: its mode and owner could be anything, and
    chmod after writing would leave a window in which others can read it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise OutputFileError(f"{path} already exists: choose a new file name (it is not overwritten)") from None
    except OSError as exc:
        raise OutputFileError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # whatever the umask
        f.write(text)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def safe_cell(value: str) -> str:
    """Spreadsheet formula injection (OWASP): a cell that could start a formula stays text."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value
