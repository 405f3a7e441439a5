"""Every query of units and their paperwork: the contact registry, signed documents, information
systems and quota; a unit's users see their own unit only (:func:`vmportal.kit.scope.visible`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from policies.roles import Actor
from vmportal.kit.scope import visible
from vmportal.unit.models import Contact, ContactRole, Document, DocumentKind, InformationSystem, Quota, Unit

# ---- units -----------------------------------------------------------------------------------------


def get_unit(session: Session, unit_id: int) -> Unit | None:
    return session.get(Unit, unit_id)


def list_units(session: Session, actor: Actor | None = None, *, active: bool | None = None) -> list[Unit]:
    """Units in code order; only those ``actor`` may see (None: every unit)."""
    query = select(Unit)
    if actor is not None:
        query = visible(query, actor, col(Unit.id))
    if active is not None:
        query = query.where(Unit.active == active)
    return list(session.exec(query.order_by(col(Unit.code))))


def lock_unit(session: Session, unit_id: int) -> Unit | None:
    return session.exec(select(Unit).where(Unit.id == unit_id).with_for_update()).first()


def code_taken(session: Session, code: str) -> bool:
    return session.exec(select(Unit.id).where(Unit.code == code)).first() is not None


def unit_by_code(session: Session, code: str) -> Unit | None:
    """The unit of this code (codes are unique), if there is one."""
    return session.exec(select(Unit).where(Unit.code == code)).first()


# ---- contact registry -----------------------------------------------------------------------------


def list_contacts(session: Session, unit_id: int) -> list[Contact]:
    return list(session.exec(select(Contact).where(Contact.unit_id == unit_id).order_by(col(Contact.role))))


def get_contact(session: Session, unit_id: int, role: ContactRole) -> Contact | None:
    return session.exec(select(Contact).where(Contact.unit_id == unit_id, Contact.role == role.value)).first()


def security_contact_emails(session: Session, unit_id: int) -> list[tuple[str, str | None]]:
    """(role, e-mail) of the unit's security administrator and security lead, as the registry has
    them (either may be missing; an address may be empty): who hears of the unit's mail."""
    rows = session.exec(
        select(Contact.role, Contact.email).where(
            col(Contact.unit_id) == unit_id,
            col(Contact.role).in_([ContactRole.SECURITY_ADMIN.value, ContactRole.SECURITY_LEAD.value]),
        )
    ).all()
    return [(str(role), email) for role, email in rows]


# ---- documents -----------------------------------------------------------------------------------


def get_document(session: Session, doc_id: int) -> Document | None:
    return session.get(Document, doc_id)


def current_documents(session: Session, unit_id: int, kind: DocumentKind) -> list[Document]:
    return list(
        session.exec(
            select(Document)
            .where(
                Document.unit_id == unit_id,
                Document.kind == kind.value,
                col(Document.superseded_at).is_(None),
            )
            .order_by(col(Document.id))
        )
    )


def list_documents(session: Session, unit_id: int, *, include_superseded: bool = True) -> list[Document]:
    query = select(Document).where(Document.unit_id == unit_id)
    if not include_superseded:
        query = query.where(col(Document.superseded_at).is_(None))
    return list(session.exec(query.order_by(col(Document.id).desc())))


def kinds_on_file(session: Session, unit_id: int) -> set[str]:
    """The kinds of the unit's current (not superseded) documents."""
    return set(
        session.exec(
            select(Document.kind).where(Document.unit_id == unit_id, col(Document.superseded_at).is_(None))
        ).all()
    )


def agreement_filed_at(session: Session, unit_id: int) -> datetime | None:
    return session.exec(
        select(Document.filed_at)
        .where(
            Document.unit_id == unit_id,
            Document.kind == DocumentKind.VM_AGREEMENT.value,
            col(Document.superseded_at).is_(None),
        )
        .order_by(col(Document.filed_at).desc())
    ).first()


# ---- information systems ----------------------------------------------------------------------------


def list_systems(session: Session, unit_id: int) -> list[InformationSystem]:
    return list(
        session.exec(
            select(InformationSystem)
            .where(InformationSystem.unit_id == unit_id)
            .order_by(col(InformationSystem.id))
        )
    )


def system_id_by_name(session: Session, unit_id: int, name: str) -> int | None:
    """The id of the unit's information system named ``name``, if it has one."""
    return session.exec(
        select(InformationSystem.id).where(
            InformationSystem.unit_id == unit_id, InformationSystem.name == name
        )
    ).first()


def get_system(session: Session, system_id: int) -> InformationSystem | None:
    return session.get(InformationSystem, system_id)


def referencing_tables(session: Session, table: str, row_id: int) -> list[str]:
    """The tables with a row whose foreign key points at row ``row_id`` of ``table``.

    Read from the metadata of every model the process has imported (the application imports them
    all), so a lower domain can refuse to delete a row an upper domain still names (a VM, a request)
    without importing that domain; the database's own foreign keys remain the last guard.
    """
    found: list[str] = []
    for other in SQLModel.metadata.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table.name != table:
                continue
            hit = session.execute(sa.select(fk.parent).where(fk.parent == row_id).limit(1)).first()
            if hit is not None and other.name not in found:
                found.append(other.name)
    return found


# ---- quota --------------------------------------------------------------------------------------


def get_quota(session: Session, unit_id: int) -> Quota | None:
    return session.get(Quota, unit_id)
