"""The inbound contract for upstream systems that publish extracts as events (topic
``<prefix>.ingest.inbound.v1``), and the client-side helper that produces it.

An extract is framed as ``extract-started`` → ``record`` × n → ``extract-completed`` (with the
record count and a checksum), all with the extract's reference as the Kafka key, so they stay in
order on one partition and ingest can tell a complete extract from a partial one.

Personal data never travels in clear text: each record's fields are sealed with AES-256-GCM
under a key the publisher makes for that extract, and that key travels in ``extract-started``
wrapped with RSA-OAEP-SHA256 to ingest's inbound public key (``recipient_key_id`` names which).

Extracts are authenticated: the publisher signs (Ed25519) ``extract-started`` itself (reference,
source, reference date, originator, publisher id, the wrapped key), and the framed extract — the
same, the record count and the checksum of every record's ciphertext — in ``extract-completed``.
Ingest holds a registry of publishers (id → public key → the sources it may send). A start that
is unsigned, wrongly signed, or from a publisher not allowed its source is refused on arrival,
audited and never stored, so nothing is staged under it and it cannot hold a reference against
the genuine extract; a completion that does not verify is refused, reported and audited. Anyone
who can write to the topic can seal data to ingest's public key; only a registered publisher can
sign.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .errors import ConfigurationError, SaisError
from .events import Source

ExtractRef = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._:-]{1,100}$",
        description="Publisher's id of the extract",
        examples=["sims-937-may-2017-001"],
    ),
]
MAX_RECORDS = 10_000_000  # England has about 9 million pupils: no extract is larger
_KAFKA_USER = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?")  # also a Kubernetes name (Strimzi's KafkaUser)
MAX_RECORD_CIPHERTEXT = 65_536  # base64 characters: a row of a few dozen columns is well under 4 KiB
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InboundEncryption(_Strict):
    alg: Literal["RSA-OAEP-256+A256GCM"] = "RSA-OAEP-256+A256GCM"
    recipient_key_id: str = Field(description="Which ingest inbound public key wrapped the extract key")
    wrapped_key: str = Field(description="base64 RSA-OAEP-SHA256 wrap of the 256-bit AES key")


class InboundExtractStarted(_Strict):
    """First message of an extract."""

    type: Literal["extract-started"] = "extract-started"
    extract_ref: ExtractRef
    source: Source
    reference_date: date
    originator_system: str = Field(description="The upstream system, e.g. the admissions system's name")
    publisher: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Publisher id in ingest's registry; its key signs the extract",
    )
    encryption: InboundEncryption
    signature: str | None = Field(
        None,
        max_length=200,
        description="base64 Ed25519 signature of this start (see started_content); ingest stages records only "
        "under a start a registered publisher signed",
    )


class InboundRecord(_Strict):
    """One row: a JSON object of column name → text, sealed (AAD = ``<extract_ref>:<seq>``)."""

    type: Literal["record"] = "record"
    extract_ref: ExtractRef
    seq: int = Field(ge=1, le=MAX_RECORDS, description="1, 2, … n in publishing order")
    nonce: str = Field(max_length=24, description="base64 96-bit AES-GCM nonce")
    ciphertext: str = Field(max_length=MAX_RECORD_CIPHERTEXT, description="base64 AES-256-GCM ciphertext with tag")


class InboundExtractCompleted(_Strict):
    """Last message: how many records there were and the sha256 of their ciphertexts, newline-joined."""

    type: Literal["extract-completed"] = "extract-completed"
    extract_ref: ExtractRef
    record_count: int = Field(ge=0, le=MAX_RECORDS)
    checksum: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str | None = Field(
        None, max_length=200, description="base64 Ed25519 signature of the framed extract (see signed_content)"
    )


InboundMessage = Annotated[InboundExtractStarted | InboundRecord | InboundExtractCompleted, Field(discriminator="type")]
inbound_adapter: TypeAdapter = TypeAdapter(InboundMessage)


def checksum(ciphertexts: list[str]) -> str:
    return hashlib.sha256("\n".join(ciphertexts).encode()).hexdigest()


def _frame(started: InboundExtractStarted) -> list[str]:
    return [
        started.extract_ref,
        started.source,
        started.reference_date.isoformat(),
        started.originator_system,
        started.publisher or "",
        started.encryption.recipient_key_id,
        started.encryption.wrapped_key,
    ]


def started_content(started: InboundExtractStarted) -> bytes:
    """What the publisher signs in ``extract-started``: the start itself, each part on its own line."""
    return "\n".join(["sais-inbound-start-v1", *_frame(started)]).encode()


def signed_content(started: InboundExtractStarted, record_count: int, checksum_hex: str) -> bytes:
    """What the publisher signs in ``extract-completed``: the whole frame of the extract, each part on its own line."""
    return "\n".join(["sais-inbound-extract-v1", *_frame(started), str(record_count), checksum_hex]).encode()


class InboundAuthenticationError(SaisError, ValueError):
    """An inbound extract is unsigned, wrongly signed, or from a publisher not allowed its source."""


@dataclass(frozen=True)
class Publisher:
    id: str
    public_key: Ed25519PublicKey
    sources: frozenset[str]
    kafka_user: str = "sais-publisher"  # its own Kafka login (`sais kafka setup` grants it the inbound topic)


class PublisherRegistry:
    """Which upstream systems may publish which sources, and the key each signs with.

    A YAML file: ``publishers: [{id, public_key (PEM, Ed25519), sources: [...], kafka_user}]``; a publisher
    without ``kafka_user`` shares the default ``sais-publisher`` login."""

    def __init__(self, publishers: list[Publisher]) -> None:
        self._by_id = {p.id: p for p in publishers}

    @classmethod
    def load(cls, path: Path) -> PublisherRegistry:
        try:
            doc = yaml.safe_load(path.read_text())
            publishers = []
            for entry in doc["publishers"]:
                key = serialization.load_pem_public_key(entry["public_key"].encode())
                if not isinstance(key, Ed25519PublicKey):
                    raise ValueError(f"publisher {entry['id']}: the key must be Ed25519")
                user = str(entry.get("kafka_user") or "sais-publisher")
                if not _KAFKA_USER.fullmatch(user):
                    raise ValueError(f"publisher {entry['id']}: kafka_user {user!r} is not a Kafka user name")
                publishers.append(Publisher(str(entry["id"]), key, frozenset(entry["sources"]), user))
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"publisher registry {path}: {type(exc).__name__}: {exc}") from None
        return cls(publishers)

    @property
    def kafka_users(self) -> list[str]:
        """The Kafka users the publishers log in as (each may write the inbound topic, under a quota)."""
        return sorted({p.kafka_user for p in self._by_id.values()})

    def verify_start(self, started: InboundExtractStarted) -> Publisher:
        """A start signed by a registered publisher allowed its source; raises otherwise."""
        return self._verified(started, started.signature, started_content(started))

    def verify(self, started: InboundExtractStarted, completed: InboundExtractCompleted) -> Publisher:
        """The whole extract signed by a registered publisher allowed its source; raises otherwise."""
        return self._verified(
            started, completed.signature, signed_content(started, completed.record_count, completed.checksum)
        )

    def _verified(self, started: InboundExtractStarted, signature: str | None, content: bytes) -> Publisher:
        if not started.publisher or not signature:
            raise InboundAuthenticationError("unsigned: the extract names no publisher or carries no signature")
        publisher = self._by_id.get(started.publisher)
        if publisher is None:
            raise InboundAuthenticationError(f"publisher {started.publisher!r} is not in the registry")
        try:
            publisher.public_key.verify(base64.b64decode(signature, validate=True), content)
        except (InvalidSignature, ValueError):
            raise InboundAuthenticationError(
                f"the signature does not verify with publisher {publisher.id!r}'s key"
            ) from None
        if started.source not in publisher.sources:
            raise InboundAuthenticationError(
                f"publisher {publisher.id!r} may not send {started.source} (allowed: {sorted(publisher.sources)})"
            )
        return publisher


class InboundExtractWriter:
    """For upstream systems: builds the messages of one extract, sealed for ingest's public key."""

    def __init__(
        self,
        public_key_pem: bytes,
        recipient_key_id: str,
        extract_ref: str,
        source: str,
        reference_date: date,
        originator_system: str,
        *,
        publisher: str,
        signing_key_pem: bytes,
    ) -> None:
        pub = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(pub, rsa.RSAPublicKey):
            raise ValueError("the inbound key must be an RSA public key")
        signing_key = serialization.load_pem_private_key(signing_key_pem, None)
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise ValueError("the publisher's signing key must be an Ed25519 private key")
        self._signing_key = signing_key
        self._key = AESGCM.generate_key(bit_length=256)
        self.extract_ref = extract_ref
        self._ciphertexts: list[str] = []
        unsigned = InboundExtractStarted(
            extract_ref=extract_ref,
            source=source,
            reference_date=reference_date,
            originator_system=originator_system,
            publisher=publisher,
            encryption=InboundEncryption(
                recipient_key_id=recipient_key_id, wrapped_key=base64.b64encode(pub.encrypt(self._key, _OAEP)).decode()
            ),
        )
        signature = base64.b64encode(signing_key.sign(started_content(unsigned))).decode()
        self.started = unsigned.model_copy(update={"signature": signature})

    def record(self, row: dict[str, str]) -> InboundRecord:
        seq = len(self._ciphertexts) + 1
        nonce = os.urandom(12)
        ct = AESGCM(self._key).encrypt(nonce, json.dumps(row).encode(), f"{self.extract_ref}:{seq}".encode())
        rec = InboundRecord(
            extract_ref=self.extract_ref,
            seq=seq,
            nonce=base64.b64encode(nonce).decode(),
            ciphertext=base64.b64encode(ct).decode(),
        )
        self._ciphertexts.append(rec.ciphertext)
        return rec

    def completed(self) -> InboundExtractCompleted:
        digest = checksum(self._ciphertexts)
        signature = self._signing_key.sign(signed_content(self.started, len(self._ciphertexts), digest))
        return InboundExtractCompleted(
            extract_ref=self.extract_ref,
            record_count=len(self._ciphertexts),
            checksum=digest,
            signature=base64.b64encode(signature).decode(),
        )


class InboundExtractReader:
    """For ingest: unwraps an extract's key with the inbound private key and opens its records."""

    def __init__(self, private_key_pem: bytes, started: InboundExtractStarted) -> None:
        priv = serialization.load_pem_private_key(private_key_pem, None)
        if not isinstance(priv, rsa.RSAPrivateKey):
            raise ConfigurationError("the inbound private key is not an RSA key: extracts are wrapped with RSA-OAEP")
        self._key = priv.decrypt(base64.b64decode(started.encryption.wrapped_key), _OAEP)
        self.extract_ref = started.extract_ref

    def open(self, seq: int, nonce: str, ciphertext: str) -> dict[str, str]:
        data = AESGCM(self._key).decrypt(
            base64.b64decode(nonce), base64.b64decode(ciphertext), f"{self.extract_ref}:{seq}".encode()
        )
        row = json.loads(data)
        if not isinstance(row, dict):
            raise ValueError("a record must be a JSON object of column name to text")
        return {str(k): "" if v is None else str(v) for k, v in row.items()}
