"""Hypervisor connections (``/connections``) and the templates the request form offers (``/templates``).

Center staff and auditors read connections; only a center_admin registers or changes one. Secrets
are write-only. ``GET /templates`` is for everyone signed in: it is what a unit admin picks from.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from hypervisors.base import HypervisorError, TemplateInfo
from policies.roles import Role
from vmportal.connection import service
from vmportal.connection.models import HypervisorConnection
from vmportal.connection.schemas import (
    ConnectionCheckOut,
    ConnectionIn,
    ConnectionOut,
    ConnectionPatch,
    TemplateOut,
)
from vmportal.identity.deps import CurrentUser, CurrentWho, require
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import CENTER, CENTER_READ

router = APIRouter(tags=["hypervisor connections"])

ADMIN = require(Role.CENTER_ADMIN)


def connection_out(conn: HypervisorConnection) -> ConnectionOut:
    assert conn.id is not None
    return ConnectionOut(
        id=conn.id,
        name=conn.name,
        kind=conn.kind,
        url=conn.url,
        username=conn.username,
        token_id=conn.token_id,
        has_secret=bool(conn.secret),
        verify_tls=conn.verify_tls,
        ca_file=conn.ca_file,
        defaults=dict(conn.defaults or {}),
        active=conn.active,
        last_check_at=conn.last_check_at,
        last_check_ok=conn.last_check_ok,
        last_check_message=conn.last_check_message,
        created_at=conn.created_at,
    )


def template_out(conn: HypervisorConnection, template: TemplateInfo) -> TemplateOut:
    assert conn.id is not None
    return TemplateOut(
        connection_id=conn.id,
        connection=conn.name,
        ref=template.ref,
        name=template.name,
        os=template.os,
        vcpus=template.vcpus,
        memory_gib=round(template.memory_mib / 1024, 2),
        disk_gib=template.disk_gib,
    )


@router.get("/connections", dependencies=[require(*CENTER_READ)], summary="List hypervisor connections")
def list_connections(session: SessionDep, active: bool | None = None) -> list[ConnectionOut]:
    return [connection_out(c) for c in service.list_connections(session, active=active)]


@router.post(
    "/connections",
    status_code=status.HTTP_201_CREATED,
    dependencies=[ADMIN],
    summary="Register a hypervisor connection (the secret is encrypted at rest)",
)
def create_connection(body: ConnectionIn, session: SessionDep, who: CurrentWho) -> ConnectionOut:
    values = body.model_dump(exclude={"secret"})
    secret = body.secret.get_secret_value() if body.secret is not None else None
    return connection_out(service.create_connection(session, who, secret=secret, **values))


@router.get("/connections/{connection_id}", dependencies=[require(*CENTER_READ)], summary="One connection")
def get_connection(connection_id: int, session: SessionDep) -> ConnectionOut:
    return connection_out(service.get_connection(session, connection_id))


@router.patch("/connections/{connection_id}", dependencies=[ADMIN], summary="Change a connection")
def update_connection(
    connection_id: int, body: ConnectionPatch, session: SessionDep, who: CurrentWho
) -> ConnectionOut:
    conn = service.get_connection(session, connection_id)
    changes = body.model_dump(exclude_unset=True, exclude={"secret"})
    if body.secret is not None:
        changes["secret"] = body.secret.get_secret_value()
    return connection_out(service.update_connection(session, who, conn, changes))


@router.post(
    "/connections/{connection_id}/test",
    dependencies=[require(*CENTER)],
    summary="Log in to the hypervisor and report product, version and counts (kept on the connection)",
)
def test_connection(connection_id: int, session: SessionDep, who: CurrentWho) -> ConnectionCheckOut:
    conn = service.get_connection(session, connection_id)
    result = service.check_connection(session, who, conn)
    return ConnectionCheckOut(
        connection_id=connection_id,
        ok=result.ok,
        message=result.message,
        product=result.product,
        version=result.version,
        vm_count=result.vm_count,
        template_count=result.template_count,
        checked_at=conn.last_check_at or utcnow(),
    )


@router.get(
    "/connections/{connection_id}/templates",
    dependencies=[require(*CENTER_READ)],
    summary="Templates of one connection, read from the hypervisor",
)
def connection_templates(connection_id: int, session: SessionDep) -> list[TemplateOut]:
    conn = service.get_connection(session, connection_id)
    service.end_read_transaction(session)
    try:
        templates = service.templates_of(conn, fresh=True)
    except HypervisorError as exc:
        raise errors.UpstreamError(
            f"connection '{conn.name}': {exc.message}",
            message_zh=f"连接“{conn.name}”读取模板失败：{exc.message}",
            connection_id=connection_id,
        ) from exc
    return [template_out(conn, t) for t in templates]


@router.get(
    "/templates",
    summary="Templates of every active connection: what a request may be cloned from",
)
def all_templates(session: SessionDep, _: CurrentUser) -> list[TemplateOut]:
    """A connection that cannot be reached right now is left out (and logged), so one hypervisor
    being down does not empty the request form."""
    found, _failed = service.all_templates(session)
    return [template_out(conn, t) for conn, t in found]
