"""Every query of the hypervisor connections."""

from __future__ import annotations

from sqlmodel import Session, col, select

from vmportal.connection.models import HypervisorConnection


def get_connection(session: Session, connection_id: int) -> HypervisorConnection | None:
    """The connection of this id, if there is one."""
    return session.get(HypervisorConnection, connection_id)


def connections_by_id(session: Session, *, active: bool | None = None) -> list[HypervisorConnection]:
    """Every connection (only the active or only the inactive ones when ``active`` is given), by id."""
    query = select(HypervisorConnection).order_by(col(HypervisorConnection.id))
    if active is not None:
        query = query.where(col(HypervisorConnection.active).is_(active))
    return list(session.exec(query))


def connection_by_name(session: Session, name: str) -> HypervisorConnection | None:
    """The connection named ``name`` (names are unique), if there is one."""
    return session.exec(select(HypervisorConnection).where(HypervisorConnection.name == name)).first()


def name_taken(session: Session, name: str, connection_id: int | None = None) -> bool:
    """Whether a connection other than ``connection_id`` is named ``name``."""
    query = select(HypervisorConnection.id).where(HypervisorConnection.name == name)
    if connection_id is not None:
        query = query.where(HypervisorConnection.id != connection_id)
    return session.exec(query).first() is not None
