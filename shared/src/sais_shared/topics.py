"""Topic names, one place. Every name carries its contract version."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str = "sais"

    @property
    def inbound(self) -> str:
        return f"{self.prefix}.ingest.inbound.v1"

    @property
    def pupil_recorded(self) -> str:
        return f"{self.prefix}.ingest.pupil-recorded.v1"

    @property
    def extract_completed(self) -> str:
        return f"{self.prefix}.ingest.extract-completed.v1"

    @property
    def row_rejected(self) -> str:
        return f"{self.prefix}.ingest.row-rejected.v1"

    @property
    def cohort(self) -> str:
        return f"{self.prefix}.eligibility.cohort.v1"

    @property
    def delivery_completed(self) -> str:
        return f"{self.prefix}.delivery.delivery-completed.v1"

    @property
    def deletion_completed(self) -> str:
        return f"{self.prefix}.retention.deletion-completed.v1"

    @property
    def deletion_requested(self) -> str:
        return f"{self.prefix}.retention.deletion-requested.v1"

    # Each owner confirms its deletions on its own topic, which only it may write (ACL): a confirmation
    # is the owner's word, never another service's.
    @property
    def ingest_deletion_confirmed(self) -> str:
        return f"{self.prefix}.ingest.deletion-confirmed.v1"

    @property
    def eligibility_deletion_confirmed(self) -> str:
        return f"{self.prefix}.eligibility.deletion-confirmed.v1"

    @property
    def delivery_deletion_confirmed(self) -> str:
        return f"{self.prefix}.delivery.deletion-confirmed.v1"

    def deletion_confirmed_by(self, owner: str) -> str:
        """The topic an owner (ingest, eligibility, delivery) confirms its deletions on."""
        return getattr(self, f"{owner}_deletion_confirmed")

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter.v1"

    @classmethod
    def names(cls) -> list[str]:
        """The attribute name of every topic (``inbound``, ``cohort`` …)."""
        return sorted(name for name in dir(cls) if isinstance(getattr(cls, name), property))

    def all(self) -> list[str]:
        return [getattr(self, name) for name in self.names()]
