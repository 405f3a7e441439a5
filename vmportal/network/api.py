"""IP address pools (``/pools``): the center defines them; delivery takes addresses from them.

Anyone signed in may read pools (the request form may offer a pool); only a center_admin changes them.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status
from sqlmodel import Session

from policies.roles import Role
from vmportal.identity.deps import CurrentUser, CurrentWho, require
from vmportal.kit.http import SessionDep
from vmportal.network import service
from vmportal.network.models import IPPool
from vmportal.network.schemas import AllocationOut, PoolCounts, PoolIn, PoolOut, PoolPatch

router = APIRouter(tags=["ip pools"])

ADMIN = require(Role.CENTER_ADMIN)
CENTER_READ = require(Role.CENTER_ADMIN, Role.CENTER_OPERATOR, Role.AUDITOR)


def pool_out(session: Session, pool: IPPool) -> PoolOut:
    assert pool.id is not None
    counts = service.counts(session, pool)
    return PoolOut(
        id=pool.id,
        name=pool.name,
        cidr=pool.cidr,
        prefix_length=service.parse_cidr(pool.cidr).prefixlen,
        gateway=pool.gateway,
        dns=list(pool.dns or []),
        excluded=list(pool.excluded or []),
        network=pool.network,
        connection_id=pool.connection_id,
        created_at=pool.created_at,
        counts=PoolCounts(size=counts.size, used=counts.used, free=counts.free),
    )


@router.get("/pools", summary="List IP pools with their counts")
def list_pools(
    session: SessionDep,
    _: CurrentUser,
    connection_id: int | None = Query(None, gt=0),
) -> list[PoolOut]:
    return [pool_out(session, p) for p in service.list_pools(session, connection_id)]


@router.post("/pools", status_code=status.HTTP_201_CREATED, dependencies=[ADMIN], summary="Create an IP pool")
def create_pool(body: PoolIn, session: SessionDep, who: CurrentWho) -> PoolOut:
    pool = service.create_pool(session, who, **body.model_dump())
    return pool_out(session, pool)


@router.get("/pools/{pool_id}", summary="One IP pool with size, used and free counts")
def get_pool(pool_id: int, session: SessionDep, _: CurrentUser) -> PoolOut:
    return pool_out(session, service.get_pool(session, pool_id))


@router.patch("/pools/{pool_id}", dependencies=[ADMIN], summary="Change an IP pool")
def update_pool(pool_id: int, body: PoolPatch, session: SessionDep, who: CurrentWho) -> PoolOut:
    pool = service.get_pool(session, pool_id)
    pool = service.update_pool(session, who, pool, body.model_dump(exclude_unset=True))
    return pool_out(session, pool)


@router.delete(
    "/pools/{pool_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[ADMIN],
    summary="Delete an IP pool (409 while any address of it is in use)",
)
def delete_pool(pool_id: int, session: SessionDep, who: CurrentWho) -> Response:
    service.delete_pool(session, who, service.get_pool(session, pool_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/pools/{pool_id}/allocations",
    dependencies=[CENTER_READ],
    summary="Addresses handed out from a pool (live ones, or all with released=true)",
)
def list_allocations(
    pool_id: int,
    session: SessionDep,
    released: bool = Query(False, description="Include released allocations (the pool's history)."),
    limit: int = Query(500, ge=1, le=5000),
    offset: int = Query(0, ge=0),
) -> list[AllocationOut]:
    rows = service.allocations(session, pool_id, released=released, limit=limit, offset=offset)
    return [
        AllocationOut(
            id=r.id or 0,
            address=r.address,
            request_id=r.request_id,
            vm_id=r.vm_id,
            allocated_at=r.allocated_at,
            released_at=r.released_at,
        )
        for r in rows
    ]
