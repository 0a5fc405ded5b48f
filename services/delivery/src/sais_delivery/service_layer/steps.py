"""Steps every delivery use case takes: move a batch on by one transition in its own unit of work, and
open a member's sealed fields for its row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from uuid import UUID

from sais_shared.crypto import DataKey, Sealed
from sais_shared.events import CohortMemberAdded, PupilPersonal

from ..domain import mavis
from ..domain.batch import Batch
from ..domain.errors import NothingToResolveError
from ..domain.member import Member
from ..domain.parts import RowSize
from ..domain.render import Row, row_bytes
from .ports import DeliveryUnitOfWork


async def move(uow: DeliveryUnitOfWork, batch_id: UUID, transition: Callable[[Batch], Batch]) -> Batch:
    """The batch, held against other senders, moved on and saved; what it is now."""
    async with uow() as tx:
        before = await tx.batches.hold(batch_id)
        if before is None:
            raise NothingToResolveError(f"no batch {batch_id}")
        after = transition(before)
        await tx.batches.save(before, after)
    return after


def open_row(m: Member, keys: Mapping[UUID, DataKey]) -> Row:
    """The member's row as it goes in the files: its sealed fields opened under the context they were
    sealed in (a clear field altered on the way refuses to open)."""
    sealed = Sealed.model_validate_json(m.personal)
    return row_of(m, keys[sealed.key_id].open_model(sealed, PupilPersonal, m.aad()))


def row_of(m: Member | CohortMemberAdded, p: PupilPersonal) -> Row:
    """A row from a member's (or its cohort event's) clear fields and its opened personal ones."""
    return Row(
        m.programme,
        m.dose,
        m.school_dfe,
        m.school_name,
        m.year_group,
        p.surname,
        p.forename,
        p.date_of_birth,
        m.gender,
        list(p.address_lines),
        p.postcode,
    )


def row_size(row: Row) -> RowSize:
    """The bytes a row takes in its programme file and in a Mavis file, as planning counts them."""
    return RowSize(row_bytes(row), mavis.line_bytes(row))
