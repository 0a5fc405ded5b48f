"""Envelope encryption: AES-256-GCM data keys, one per extract, wrapped by a key-encryption key.

Personal fields travel in Kafka and rest in PostgreSQL only as :class:`Sealed` blobs under a
data key. Retention destroys the wrapped data key, which makes every copy of those blobs
unreadable wherever it is (crypto-shredding). Nothing here does I/O; the key store adapter
(:mod:`sais_shared.keystore`) persists wrapped keys.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import string
import unicodedata
from base64 import b64decode, b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigurationError, SaisError


class DecryptionError(SaisError):
    """A sealed value could not be opened: wrong key, wrong context or tampered bytes."""


class SealedValueError(DecryptionError):
    """A sealed value does not open under its own data key and context: it was altered, or belongs to
    another record. The message carrying it is invalid (permanent), unlike a key that fails to unwrap."""


class Sealed(BaseModel):
    """A value encrypted under a data key; the key id says which one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: UUID = Field(description="Data key that encrypts this value (one per extract)")
    nonce: str = Field(description="base64 96-bit AES-GCM nonce")
    ciphertext: str = Field(description="base64 AES-256-GCM ciphertext with tag")


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class DataKey:
    key_id: UUID
    secret: bytes
    _aead: AESGCM = field(init=False, repr=False, compare=False)  # the key schedule, made once per key

    def __post_init__(self) -> None:
        object.__setattr__(self, "_aead", AESGCM(self.secret))

    def __repr__(self) -> str:  # never print key material
        return f"DataKey(key_id={self.key_id})"

    @classmethod
    def generate(cls, key_id: UUID) -> DataKey:
        return cls(key_id, AESGCM.generate_key(bit_length=256))

    def seal(self, plaintext: bytes, context: bytes) -> Sealed:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext, context)
        return Sealed.model_construct(  # built from our own values: nothing to validate
            key_id=self.key_id,
            nonce=b64encode(nonce).decode(),
            ciphertext=b64encode(ct).decode(),
        )

    def open(self, sealed: Sealed, context: bytes) -> bytes:
        if sealed.key_id != self.key_id:
            raise DecryptionError(f"value sealed under {sealed.key_id}, not {self.key_id}")
        try:
            return self._aead.decrypt(b64decode(sealed.nonce), b64decode(sealed.ciphertext), context)
        except (InvalidTag, ValueError, binascii.Error):
            raise SealedValueError(f"cannot open value under key {self.key_id}") from None

    def reseal(self, sealed: Sealed, context: bytes, new_context: bytes) -> Sealed:
        """The same plaintext sealed afresh under another context (a new nonce), never parsed on the way."""
        return self.seal(self.open(sealed, context), new_context)

    def seal_model(self, model: BaseModel, context: bytes) -> Sealed:
        return self.seal(model.model_dump_json().encode(), context)

    def open_model(self, sealed: Sealed, cls: type[M], context: bytes) -> M:
        return cls.model_validate_json(self.open(sealed, context))


class KeyEncryptionKey:
    """Wraps and unwraps data keys; derives the blind-index key. Fails fast without its key.

    ``retired`` KEKs (by id) unwrap only: during a rotation, data keys wrapped by the KEK before this one
    (or by a writer not yet restarted) still open, while every new key is wrapped by this one. Ids are
    labels an operator chooses; the :attr:`fingerprint` names the key itself, so a new KEK left under an
    old id, or a retired copy of the one in force, is refused here instead of stranding every data key."""

    def __init__(
        self,
        secret: bytes,
        kek_id: str = "kek-1",
        index_key: bytes | None = None,
        retired: Mapping[str, bytes] | None = None,
    ) -> None:
        if len(secret) != 32 or any(len(s) != 32 for s in (retired or {}).values()):
            raise ConfigurationError("a key-encryption key must be 32 bytes")
        retired = dict(retired or {})
        if kek_id in retired:
            raise ConfigurationError(
                f"a retired KEK has the id of the KEK in force ({kek_id}): a new KEK needs a new SAIS_KEK_ID, "
                "and the old one keeps its id in SAIS_KEK_RETIRED_DIR"
            )
        self._aead = AESGCM(secret)
        self.kek_id = kek_id
        self.fingerprint = kek_fingerprint(secret)
        self._retired = {i: AESGCM(s) for i, s in retired.items()}
        self._fingerprints = {i: kek_fingerprint(s) for i, s in retired.items()} | {kek_id: self.fingerprint}
        twins = sorted(i for i, f in self._fingerprints.items() if i != kek_id and f == self.fingerprint)
        if twins:
            raise ConfigurationError(
                f"the retired KEK {twins[0]} is the KEK in force ({kek_id}) under another id: "
                "rotating needs a new key (`sais keys new-kek`)"
            )
        # The blind-index key must outlive KEK rotations (match keys are stored): pin it with
        # SAIS_INDEX_KEY_FILE; without one it is derived from this KEK.
        self._index_key = index_key or derive_index_key(secret)
        self._index_mac = hmac.new(self._index_key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(kek_id={self.kek_id!r})"

    def wrap(self, key: DataKey) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, key.secret, b"sais-data-key:" + key.key_id.bytes)

    @property
    def retired_ids(self) -> list[str]:
        return sorted(self._retired)

    def fingerprint_of(self, kek_id: str) -> str | None:
        """The fingerprint of a KEK this ring holds (in force or retired), by id."""
        return self._fingerprints.get(kek_id)

    def unwrap(self, key_id: UUID, wrapped: bytes) -> DataKey:
        """The data key, opened by the KEK in force or, failing that, by a retired one."""
        return self.unwrap_with_id(key_id, wrapped)[0]

    def unwrap_with_id(self, key_id: UUID, wrapped: bytes) -> tuple[DataKey, str]:
        """The data key and the id of the KEK that opened it."""
        for kek_id, aead in ((self.kek_id, self._aead), *self._retired.items()):
            try:
                return DataKey(
                    key_id, aead.decrypt(wrapped[:12], wrapped[12:], b"sais-data-key:" + key_id.bytes)
                ), kek_id
            except InvalidTag:
                continue
        held = ", ".join([self.kek_id, *self._retired])
        raise DecryptionError(f"data key {key_id} does not unwrap with {held}: wrong key-encryption key?")

    def blind_index(self, *parts: str) -> str:
        """A keyed hash of normalised identifying values: equal inputs, equal index; not reversible."""
        return self._index(b"\x1f".join([_normalised(p) for p in parts]))

    def exact_index(self, *parts: str) -> str:
        """A keyed hash of values exactly as they are (no folding): equal only when every character is."""
        return self._index("\x1f".join(parts).encode())

    def _index(self, msg: bytes) -> str:
        h = self._index_mac.copy()  # the key's padded blocks hashed once, not on every row
        h.update(msg)
        return h.hexdigest()[:32]


def kek_fingerprint(kek_secret: bytes) -> str:
    """A KEK's public name (32 hex digits): derived one way, so it tells two keys apart and reveals neither."""
    return (
        HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=b"sais kek fingerprint v1").derive(kek_secret).hex()
    )


def derive_index_key(kek_secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sais blind index v1").derive(kek_secret)


_ASCII_LOWER = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())
_ASCII_NOT_ALNUM = bytes(b for b in range(256) if not chr(b).isascii() or not chr(b).isalnum())


def normalise_for_matching(value: str) -> str:
    """Case, accents, spacing, hyphens and apostrophes folded: ``O'Brien-Núñez`` → ``obriennunez``."""
    return _normalised(value).decode()


def _normalised(value: str) -> bytes:
    """:func:`normalise_for_matching`, encoded (UTF-8), as a blind index hashes it."""
    if value.isascii():  # the common case, and the same result: NFKD keeps ASCII, isalnum is [0-9A-Za-z]
        return value.encode().translate(_ASCII_LOWER, _ASCII_NOT_ALNUM)
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if c.isalnum()).casefold().encode()
