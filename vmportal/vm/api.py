"""VMs, their power operations and decommissioning.

Unit scoping: a unit's users see and act on their own unit's VMs only; any other VM answers 404,
exactly like a VM that does not exist. Center staff and auditors see every VM.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from vmportal.identity import service as identity
from vmportal.identity.deps import CurrentActor, CurrentWho, require, user_from_token
from vmportal.kit import db
from vmportal.kit.http import BEARER_SECURITY, SessionDep, request_bearer_token
from vmportal.kit.scope import CENTER
from vmportal.vm import schemas, service
from vmportal.vm.schemas import (
    MAX_ID,
    PREFIX,
    CredentialsOut,
    DecommissionIn,
    DecommissionOut,
    NetworkIn,
    NetworkOut,
    NICOut,
    OperationList,
    PowerIn,
    PowerOperationOut,
    PowerWarningOut,
    VMFilters,
    VMList,
    VMListQuery,
    VMOut,
    operation_links,
    vm_links,
)
from vmportal.vm.service import credentials, network

router = APIRouter(tags=["vms"])

VMId = Annotated[int, Path(ge=1, le=MAX_ID, description="VM id")]


def vm_out(row: service.VMRow) -> VMOut:
    """The VM as the API shows it (the shape stated once: vmportal.vm.schemas.vm_out)."""
    return schemas.vm_out(row.vm, row.unit_code, row.unit_name)


def operation_out(row: service.OperationRow) -> PowerOperationOut:
    op = row.op
    assert op.id is not None
    return PowerOperationOut.model_validate(
        {**op.model_dump(), "requested_by_username": row.username, "links": operation_links(op.id, op.vm_id)}
    )


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI description of a query validated by the endpoint itself (see list_vms)."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})

    def inline(node: Any) -> Any:  # the enums' definitions in place of their $refs
        if isinstance(node, dict):
            if "$ref" in node:
                return {
                    **inline(definitions[node["$ref"].rsplit("/", 1)[1]]),
                    **inline({k: v for k, v in node.items() if k != "$ref"}),
                }
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return [
        {"name": name, "in": "query", "required": False, "schema": inline(prop), **_described(prop)}
        for name, prop in schema["properties"].items()
    ]


def _described(prop: dict[str, Any]) -> dict[str, Any]:
    return {"description": prop["description"]} if "description" in prop else {}


def _list_query(request: Request) -> VMListQuery:
    """The query validated as the one model vmportal/vm/lane.py validates too (same rules, same
    422 shape naming query.<field>), and before the token: a bad query is a 422 whoever asks."""
    try:
        return VMListQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


# On PostgreSQL, vmportal/vm/lane.py answers these two reads before the router whenever it can
# (valid query, live token, a visible VM); what reaches these endpoints is the rest: SQLite, the
# errors (422, 401, 404), and a VM whose stored document is missing. They answer through the ORM.
@router.get(
    "/vms",
    response_model=VMList,
    summary="List VMs (a unit's users: their own unit's only)",
    openapi_extra={"parameters": _query_parameters(VMListQuery), **BEARER_SECURITY},
)
def list_vms(request: Request) -> VMList:
    filters = VMFilters.of(_list_query(request))
    with db.transaction() as session:
        actor = identity.actor_of(user_from_token(session, request_bearer_token(request), request))
        rows, total = service.list_vms(session, actor, filters)
        items = [vm_out(r) for r in rows]
        return VMList(items=items, total=total, limit=filters.limit, offset=filters.offset)


@router.get("/vms/{vm_id}", response_model=VMOut, summary="One VM (another unit's answers 404)")
def get_vm(vm_id: VMId, session: SessionDep, actor: CurrentActor) -> VMOut:
    return vm_out(service.get_vm(session, actor, vm_id))


@router.get(
    "/vms/{vm_id}/operations", response_model=OperationList, summary="The VM's power history, newest first"
)
def list_operations(
    vm_id: VMId,
    session: SessionDep,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> OperationList:
    rows, total = service.list_operations(session, actor, vm_id, limit=limit, offset=offset)
    return OperationList(items=[operation_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.post(
    "/vms/{vm_id}/power",
    response_model=PowerOperationOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start, stop, restart, shut down or reboot a VM",
    description=(
        "Answers 202 with the queued operation; poll its `links.self` until `state` is `succeeded` or "
        "`failed`. Refusals: 404 for another unit's VM; 403 `power_ops` (only the unit's security "
        "administrators and the center) or `suspended_lock` (a VM suspended for security is brought back "
        "by the center only); 409 naming the state when the VM is decommissioned or its power state does "
        "not allow the action (restart and reboot need a running VM); 422 `guest_power` for a guest "
        "shutdown or reboot the VM's hypervisor connection cannot do. Start, stop and shutdown are "
        "idempotent: when the VM is already in that state the operation succeeds at once and nothing is "
        "sent to the hypervisor (docs/decisions.md, power semantics)."
    ),
)
def power(
    vm_id: VMId, body: PowerIn, session: SessionDep, actor: CurrentActor, who: CurrentWho, response: Response
) -> PowerOperationOut:
    op = service.request_power(session, actor, who, vm_id, body.action, body.reason)
    username = who.actor
    assert op.id is not None
    response.headers["Location"] = f"{PREFIX}/operations/{op.id}"
    out = operation_out(service.OperationRow(op, username))
    out.warnings = [
        PowerWarningOut(code=w.code, message=w.message_en, message_zh=w.message_zh, detail=w.detail)
        for w in service.power_warnings(session, vm_id)
    ]
    return out


@router.get("/operations/{operation_id}", response_model=PowerOperationOut, summary="One power operation")
def get_operation(
    operation_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, actor: CurrentActor
) -> PowerOperationOut:
    return operation_out(service.get_operation(session, actor, operation_id))


@router.post(
    "/vms/{vm_id}/decommission",
    response_model=DecommissionOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require(*CENTER)],
    summary="Retire a VM (center): delete it on the hypervisor and release its address",
)
def decommission(
    vm_id: VMId, body: DecommissionIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> DecommissionOut:
    vm = service.request_decommission(session, actor, who, vm_id, body.reason)
    return DecommissionOut(
        vm_id=vm_id,
        lifecycle=vm.lifecycle,
        state="done" if vm.decommissioned_at else "pending",
        decommissioned_at=vm.decommissioned_at,
        links=vm_links(vm_id),
    )


@router.post(
    "/vms/{vm_id}/credentials",
    summary="Collect a delivered VM's IP, admin account and initial password: once, by the unit's admin",
    responses={410: {"description": "Already collected (rule credentials_once)"}},
)
def fetch_credentials(
    vm_id: int, response: Response, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> CredentialsOut:
    answer = credentials.fetch_credentials(session, actor, who, vm_id)
    # The password exists nowhere else any more: no cache on the way may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return answer


@router.post(
    "/vms/{vm_id}/network",
    response_model=NetworkOut,
    summary="Cut or restore every NIC of a VM (center); answers the NIC state read back",
    description=(
        "`connected: false` disconnects every virtual NIC and its connect-at-power-on flag, so the VM "
        "stays isolated through a reboot; `true` connects them again. The answer is what the "
        "hypervisor reports afterwards. Refusals: 404 for another unit's VM; 403 `power_ops` for "
        "anyone but center staff (units never cut or restore networks), with `suspended_lock` too for "
        "a reconnect of a suspended VM; 409 naming the state when the VM is not active, or when a "
        "suspended VM should be restored through its incident; 502 with the hypervisor's message."
    ),
)
def set_network(
    vm_id: VMId, body: NetworkIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> NetworkOut:
    vm, info, previously = network.change_network(session, actor, who, vm_id, body.connected, body.reason)
    return NetworkOut(
        vm_id=vm_id,
        network_connected=vm.network_connected,
        power_state=vm.power_state,
        nics=[NICOut.model_validate(n) for n in network.nics(info)],
        version=vm.version,
        previously_connected=previously,
        links={"vm": f"{PREFIX}/vms/{vm_id}"},
    )
