"""An exact scan for personal data in clear text.

A personal value (a name, a date of birth, a first address line, a postcode) counts as found only
as a whole token: not inside a longer word, and never inside base64 or hex text. Ciphertext,
nonces and wrapped keys are random base64, in which any short name turns up by chance sooner or
later; a scan that matched substrings there would fail by chance and so prove nothing. Events are
parsed and only the fields meant to be clear text are scanned; whether the sealed fields still
open is a separate question, answered with the key store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator

# Fields that hold random bytes as base64 or hex: the parts of a sealed value, never clear text.
SEALED_FIELDS = frozenset({"nonce", "ciphertext", "wrapped_key", "wrapped"})
# A token is delimited by anything that cannot continue a word, a base64 run or a hex run.
_BEFORE = r"(?<![\w+/])"
_AFTER = r"(?![\w+/=])"


class PersonalDataScan:
    """Finds any of a set of personal values, as whole tokens, in text or in a parsed event."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = frozenset(v for v in values if v)
        if not self.values:
            raise ValueError("a scan for nothing proves nothing: give it the personal values to look for")
        alternatives = "|".join(re.escape(v) for v in sorted(self.values, key=len, reverse=True))
        self._pattern = re.compile(f"{_BEFORE}(?:{alternatives}){_AFTER}")

    def in_text(self, text: str) -> set[str]:
        """The personal values that stand as whole tokens in this text."""
        return {m.group(0) for m in self._pattern.finditer(text)}

    def in_event(self, raw: bytes) -> set[str]:
        """The personal values in an event's clear-text fields (sealed parts are skipped)."""
        try:
            doc = json.loads(raw)
        except ValueError:  # not JSON: every byte of it is meant to be readable
            return self.in_text(raw.decode(errors="replace"))
        return self.in_text("\n".join(clear_strings(doc)))

    def in_events(self, raws: Iterable[bytes]) -> set[str]:
        return set().union(*(self.in_event(r) for r in raws))


def clear_strings(doc: object) -> Iterator[str]:
    """Every key and string value of a parsed JSON document except the random parts of sealed values."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield str(k)
            if k in SEALED_FIELDS and isinstance(v, str):
                continue
            yield from clear_strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from clear_strings(v)
    elif isinstance(doc, str):
        yield doc
    elif doc is not None:
        yield str(doc)
