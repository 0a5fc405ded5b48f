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

    @property
    def deletion_confirmed(self) -> str:
        return f"{self.prefix}.deletion-confirmed.v1"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter.v1"

    def writes(self, principal: str) -> list[str]:
        """Topics a service (or the upstream ``publisher``) may produce to; the Kafka ACLs say the same."""
        return {
            "publisher": [self.inbound],
            "ingest": [self.pupil_recorded, self.extract_completed, self.row_rejected, self.deletion_confirmed,
                       self.dead_letter],
            "eligibility": [self.cohort, self.deletion_confirmed, self.dead_letter],
            "delivery": [self.delivery_completed, self.deletion_confirmed, self.dead_letter],
            "retention": [self.deletion_requested, self.deletion_completed, self.dead_letter],
        }[principal]

    def reads(self, principal: str) -> list[str]:
        """Topics a service consumes; nobody reads the dead-letter topic but operators."""
        return {
            "publisher": [],
            "ingest": [self.inbound, self.deletion_requested],
            "eligibility": [self.pupil_recorded, self.extract_completed, self.deletion_requested],
            "delivery": [self.cohort, self.deletion_requested],
            "retention": [self.delivery_completed, self.extract_completed, self.deletion_confirmed],
        }[principal]

    def used_by(self, principal: str) -> list[str]:
        return sorted({*self.writes(principal), *self.reads(principal)})

    def all(self) -> list[str]:
        return [
            getattr(self, name)
            for name in dir(type(self))
            if isinstance(getattr(type(self), name), property)
        ]


