"""Requests take part in deleting an IP pool (a hook the network domain offers, registered at import
by :mod:`vmportal.request`): a pool an undelivered request still names is not deleted, and the
requests done with it let go of it."""

from __future__ import annotations

from sqlmodel import Session

from vmportal.kit import errors
from vmportal.network import service as network
from vmportal.network.models import IPPool
from vmportal.request import repository
from vmportal.request.lifecycle import PENDING_STATES


def guard_pool_deletion(session: Session, pool: IPPool) -> None:
    """409 while a request to be delivered names the pool; otherwise unlink the closed ones."""
    assert pool.id is not None
    waiting = repository.count_naming_pool(session, pool.id, PENDING_STATES)
    if waiting:
        raise errors.Conflict(
            f"pool '{pool.name}' is named by {waiting} open request(s)",
            message_zh=f"地址池“{pool.name}”被 {waiting} 个未完成的申请使用",
            open_requests=waiting,
        )
    repository.unlink_pool(session, pool.id)


def register() -> None:
    network.register_pool_guard(guard_pool_deletion)
