"""Units, their contact registry, signed documents, information systems, paperwork status and quota.

Scope first, role second: a unit's user asking about another unit gets 404 (it does not exist for
them), and only then is the role checked (403 naming it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlmodel import Session

from policies.roles import Actor, Role
from vmportal.identity.deps import CurrentActor, CurrentWho, require
from vmportal.identity.schemas import user_out
from vmportal.kit import crypto, errors
from vmportal.kit.http import SessionDep, file_part
from vmportal.kit.scope import CENTER, shows_personal_data
from vmportal.kit.settings import get_settings
from vmportal.unit import accounts, service
from vmportal.unit.models import Contact, ContactRole, Document, DocumentKind, InformationSystem, Quota, Unit
from vmportal.unit.schemas import (
    ContactIn,
    ContactOut,
    CreatedAccountOut,
    DocumentForm,
    DocumentOut,
    PaperworkOut,
    QuotaIn,
    QuotaOut,
    SystemIn,
    SystemOut,
    SystemPatch,
    UnitAccountsIn,
    UnitAccountsOut,
    UnitIn,
    UnitOut,
    UnitPatch,
)

router = APIRouter(tags=["units"])

CENTER_ADMIN = require(Role.CENTER_ADMIN)
#: Room for the multipart envelope and the small text fields around the file itself.
_MULTIPART_OVERHEAD = 64 * 1024


# ---- access helpers ---------------------------------------------------------------------------------


def _unit(session: Session, actor: Actor, unit_id: int) -> Unit:
    return service.visible_unit(session, actor, unit_id)


def _may_change(actor: Actor, unit_id: int, *unit_roles: Role, what: str) -> None:
    """The center's staff (admin, operator) and the listed roles of this very unit may change it."""
    if actor.role in CENTER:
        return
    if actor.role in unit_roles and actor.unit_id == unit_id:
        return
    allowed = ", ".join([*(r.value for r in CENTER), *(f"the unit's {r.value}" for r in unit_roles)])
    raise errors.Forbidden(
        f"role '{actor.role}' may not change {what} (allowed: {allowed})",
        message_zh=f"角色“{actor.role}”无权修改{what}（允许：{allowed}）",
        role=actor.role.value,
    )


def unit_out(unit: Unit) -> UnitOut:
    assert unit.id is not None
    return UnitOut(
        id=unit.id,
        code=unit.code,
        name_zh=unit.name_zh,
        name_en=unit.name_en,
        active=unit.active,
        created_at=unit.created_at,
    )


def contact_out(contact: Contact, actor: Actor) -> ContactOut:
    assert contact.id is not None
    clear = shows_personal_data(actor)
    return ContactOut(
        id=contact.id,
        unit_id=contact.unit_id,
        role=ContactRole(contact.role),
        name=contact.name,
        title=contact.title,
        office_phone=contact.office_phone,
        mobile=contact.mobile if clear else crypto.mask(contact.mobile),
        email=contact.email,
        qq=contact.qq,
        staff_no=contact.staff_no,
        national_id=contact.national_id if clear else crypto.mask_national_id(contact.national_id),
        masked=not clear,
        updated_at=contact.updated_at,
    )


def document_out(doc: Document) -> DocumentOut:
    assert doc.id is not None
    return DocumentOut(
        id=doc.id,
        unit_id=doc.unit_id,
        kind=DocumentKind(doc.kind),
        signer=doc.signer,
        signed_on=doc.signed_on,
        filed_at=doc.filed_at,
        filed_by=doc.filed_by,
        filename=doc.filename,
        content_type=doc.content_type,
        size=doc.size,
        sha256=doc.sha256,
        superseded_at=doc.superseded_at,
        current=doc.superseded_at is None,
    )


def system_out(system: InformationSystem) -> SystemOut:
    assert system.id is not None
    return SystemOut(
        id=system.id,
        unit_id=system.unit_id,
        name=system.name,
        purpose=system.purpose,
        description=system.description,
        domains=list(system.domains),
        responsible_person=system.responsible_person,
        responsible_phone=system.responsible_phone,
        created_at=system.created_at,
    )


def quota_out(quota: Quota) -> QuotaOut:
    return QuotaOut(
        unit_id=quota.unit_id,
        max_vms=quota.max_vms,
        max_vcpus=quota.max_vcpus,
        max_memory_gib=quota.max_memory_gib,
        max_disk_gib=quota.max_disk_gib,
        updated_at=quota.updated_at,
    )


# ---- units --------------------------------------------------------------------------------------------


@router.post("/units", response_model=UnitOut, status_code=201, dependencies=[CENTER_ADMIN])
def create_unit(body: UnitIn, session: SessionDep, who: CurrentWho) -> UnitOut:
    return unit_out(
        service.create_unit(session, who, code=body.code, name_zh=body.name_zh, name_en=body.name_en)
    )


@router.get("/units", response_model=list[UnitOut], summary="All units (center, auditor) or your own unit")
def list_units(session: SessionDep, actor: CurrentActor, active: bool | None = None) -> list[UnitOut]:
    return [unit_out(u) for u in service.list_units(session, actor, active=active)]


@router.get("/units/{unit_id}", response_model=UnitOut)
def get_unit(unit_id: int, session: SessionDep, actor: CurrentActor) -> UnitOut:
    return unit_out(_unit(session, actor, unit_id))


@router.patch("/units/{unit_id}", response_model=UnitOut, dependencies=[CENTER_ADMIN])
def update_unit(
    unit_id: int, body: UnitPatch, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> UnitOut:
    unit = _unit(session, actor, unit_id)
    return unit_out(
        service.update_unit(
            session, who, unit, name_zh=body.name_zh, name_en=body.name_en, active=body.active
        )
    )


# ---- contact registry -------------------------------------------------------------------------------------


@router.get(
    "/units/{unit_id}/contacts",
    response_model=list[ContactOut],
    summary="The unit's contact registry; mobile and national ID masked except for center_admin",
)
def list_contacts(unit_id: int, session: SessionDep, actor: CurrentActor) -> list[ContactOut]:
    _unit(session, actor, unit_id)
    return [contact_out(c, actor) for c in service.list_contacts(session, unit_id)]


@router.put(
    "/units/{unit_id}/contacts/{role}",
    response_model=ContactOut,
    summary="Record the security lead or security admin (center staff, or the unit's unit_lead)",
)
def put_contact(
    unit_id: int,
    role: ContactRole,
    body: ContactIn,
    session: SessionDep,
    actor: CurrentActor,
    who: CurrentWho,
) -> ContactOut:
    _unit(session, actor, unit_id)
    _may_change(actor, unit_id, Role.UNIT_LEAD, what="the contact registry")
    contact = service.put_contact(session, who, unit_id, role, body.model_dump())
    return contact_out(contact, actor)


# ---- documents -------------------------------------------------------------------------------------------

_UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["kind", "signer", "signed_on", "file"],
                    "properties": {
                        "kind": {"type": "string", "enum": [k.value for k in DocumentKind]},
                        "signer": {"type": "string", "maxLength": 100},
                        "signed_on": {"type": "string", "format": "date"},
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "PDF, PNG or JPEG; type and size limits from settings",
                        },
                    },
                }
            }
        },
    }
}


def _form_fields(values: dict[str, Any]) -> DocumentForm:
    try:
        return DocumentForm.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)]
        ) from None


@router.post(
    "/units/{unit_id}/documents",
    response_model=DocumentOut,
    status_code=201,
    openapi_extra=_UPLOAD_SCHEMA,
    summary="File a signed commitment letter or VM agreement (multipart: kind, signer, signed_on, file)",
)
async def upload_document(
    unit_id: int, request: Request, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> DocumentOut:
    def authorise() -> None:
        _unit(session, actor, unit_id)
        _may_change(actor, unit_id, Role.UNIT_LEAD, what="the unit's signed documents")

    await run_in_threadpool(authorise)
    settings = get_settings()
    declared_length = request.headers.get("content-length", "")
    if declared_length.isdigit() and int(declared_length) > settings.upload_max_bytes + _MULTIPART_OVERHEAD:
        # Refuse before reading: an honest client announcing too much is stopped at the door.
        raise errors.PayloadTooLarge(
            f"file: larger than the limit of {settings.upload_max_bytes} bytes",
            message_zh=f"file：文件超过 {settings.upload_max_bytes} 字节的上限",
            field="file",
            rule="max_size",
            limit=settings.upload_max_bytes,
        )
    form = await request.form(max_files=1, max_fields=10)
    try:
        fields = _form_fields(
            {k: form.get(k) for k in ("kind", "signer", "signed_on") if isinstance(form.get(k), str)}
        )
        upload = file_part(form)

        def file_it() -> DocumentOut:
            doc = service.file_document(
                session,
                who,
                unit_id,
                kind=fields.kind,
                signer=fields.signer,
                signed_on=fields.signed_on,
                filename=upload.filename,
                content_type=upload.content_type or "",
                stream=upload.file,
                settings=settings,
            )
            return document_out(doc)

        return await run_in_threadpool(file_it)
    finally:
        await form.close()


@router.get("/units/{unit_id}/documents", response_model=list[DocumentOut])
def list_documents(
    unit_id: int,
    session: SessionDep,
    actor: CurrentActor,
    current: Annotated[bool, Query(description="Only documents not superseded")] = False,
) -> list[DocumentOut]:
    _unit(session, actor, unit_id)
    return [document_out(d) for d in service.list_documents(session, unit_id, include_superseded=not current)]


@router.get("/units/{unit_id}/documents/{doc_id}", response_model=DocumentOut)
def get_document(unit_id: int, doc_id: int, session: SessionDep, actor: CurrentActor) -> DocumentOut:
    _unit(session, actor, unit_id)
    return document_out(service.get_document(session, unit_id, doc_id))


@router.get(
    "/units/{unit_id}/documents/{doc_id}/file",
    response_class=FileResponse,
    summary="Download the scanned document",
)
def download_document(unit_id: int, doc_id: int, session: SessionDep, actor: CurrentActor) -> FileResponse:
    _unit(session, actor, unit_id)
    doc = service.get_document(session, unit_id, doc_id)
    path = service.document_path(doc)
    if not path.is_file():
        raise errors.NotFound("document file", doc_id)
    return FileResponse(
        path,
        media_type=doc.content_type,
        filename=doc.filename,
        headers={"X-Content-Type-Options": "nosniff", "X-Content-SHA256": doc.sha256},
    )


@router.get(
    "/units/{unit_id}/paperwork",
    response_model=PaperworkOut,
    summary="Is the unit's paperwork complete (rule paperwork), and what is missing",
)
def paperwork(unit_id: int, session: SessionDep, actor: CurrentActor) -> PaperworkOut:
    _unit(session, actor, unit_id)
    status = service.paperwork_status(session, unit_id)
    return PaperworkOut(
        unit_id=unit_id,
        complete=status.complete,
        missing=status.missing,
        agreement_filed_at=status.agreement_filed_at,
        message_zh=status.message_zh,
        message_en=status.message_en,
    )


# ---- information systems ------------------------------------------------------------------------------

_SYSTEM_WRITERS = (Role.UNIT_ADMIN, Role.UNIT_LEAD)


@router.get("/units/{unit_id}/systems", response_model=list[SystemOut])
def list_systems(unit_id: int, session: SessionDep, actor: CurrentActor) -> list[SystemOut]:
    _unit(session, actor, unit_id)
    return [system_out(s) for s in service.list_systems(session, unit_id)]


@router.post("/units/{unit_id}/systems", response_model=SystemOut, status_code=201)
def create_system(
    unit_id: int, body: SystemIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> SystemOut:
    _unit(session, actor, unit_id)
    _may_change(actor, unit_id, *_SYSTEM_WRITERS, what="the unit's information systems")
    return system_out(service.create_system(session, who, unit_id, body.model_dump()))


@router.get("/units/{unit_id}/systems/{system_id}", response_model=SystemOut)
def get_system(unit_id: int, system_id: int, session: SessionDep, actor: CurrentActor) -> SystemOut:
    _unit(session, actor, unit_id)
    return system_out(service.get_system(session, unit_id, system_id))


@router.patch("/units/{unit_id}/systems/{system_id}", response_model=SystemOut)
def update_system(
    unit_id: int, system_id: int, body: SystemPatch, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> SystemOut:
    _unit(session, actor, unit_id)
    system = service.get_system(session, unit_id, system_id)
    _may_change(actor, unit_id, *_SYSTEM_WRITERS, what="the unit's information systems")
    return system_out(service.update_system(session, who, system, body.model_dump(exclude_unset=True)))


@router.delete("/units/{unit_id}/systems/{system_id}", status_code=204)
def delete_system(
    unit_id: int, system_id: int, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> Response:
    _unit(session, actor, unit_id)
    system = service.get_system(session, unit_id, system_id)
    _may_change(actor, unit_id, *_SYSTEM_WRITERS, what="the unit's information systems")
    service.delete_system(session, who, system)
    return Response(status_code=204)


# ---- quota ------------------------------------------------------------------------------------------------


@router.get("/units/{unit_id}/quota", response_model=QuotaOut)
def get_quota(unit_id: int, session: SessionDep, actor: CurrentActor) -> QuotaOut:
    _unit(session, actor, unit_id)
    return quota_out(service.get_quota(session, unit_id))


@router.put("/units/{unit_id}/quota", response_model=QuotaOut, dependencies=[CENTER_ADMIN])
def set_quota(
    unit_id: int, body: QuotaIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> QuotaOut:
    _unit(session, actor, unit_id)
    return quota_out(service.set_quota(session, who, unit_id, body.model_dump()))


# ---- accounts from the contact registry ------------------------------------------------------------------


@router.post(
    "/units/{unit_id}/accounts",
    response_model=UnitAccountsOut,
    status_code=201,
    dependencies=[CENTER_ADMIN],
    summary="Create the unit's unit_admin / unit_lead accounts from its contact registry",
)
def create_unit_accounts(
    unit_id: int,
    session: SessionDep,
    actor: CurrentActor,
    who: CurrentWho,
    response: Response,
    body: UnitAccountsIn | None = None,
) -> UnitAccountsOut:
    response.headers["Cache-Control"] = "no-store"  # the answer carries initial passwords
    unit = _unit(session, actor, unit_id)
    wanted = (body or UnitAccountsIn()).accounts
    created = accounts.create_unit_accounts(session, who, unit, [(a.contact, a.username) for a in wanted])
    return UnitAccountsOut(
        accounts=[
            CreatedAccountOut(
                contact=c.contact_role, user=user_out(c.user), initial_password=c.initial_password
            )
            for c in created
        ]
    )
