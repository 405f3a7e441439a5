"""The paper round trip over HTTP: generate a unit's letter or agreement as PDF, file its signed scan."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from policies.roles import Actor, Role
from vmportal.identity.deps import CurrentActor, CurrentWho
from vmportal.kit import errors
from vmportal.kit.http import SessionDep, file_part
from vmportal.kit.scope import CENTER, ensure_visible, shows_personal_data
from vmportal.kit.settings import get_settings
from vmportal.paperwork import service
from vmportal.paperwork.models import GeneratedPaper, PaperKind
from vmportal.paperwork.schemas import GenerateIn, PaperOut, SignedForm
from vmportal.paperwork.sheets import XLSX_TYPE

router = APIRouter(tags=["paperwork"])
_MULTIPART_OVERHEAD = 64 * 1024


def _may_act(actor: Actor, unit_id: int, *unit_roles: Role, what: str, what_zh: str) -> None:
    # The center's staff, and the listed roles of this very unit.
    ensure_visible(actor, unit_id, "unit", unit_id)
    if actor.role in CENTER or (actor.role in unit_roles and actor.unit_id == unit_id):
        return
    raise errors.Forbidden(
        f"role '{actor.role}' may not {what}",
        message_zh=f"角色“{actor.role}”无权{what_zh}",
        role=actor.role.value,
    )


def _may_generate(actor: Actor, unit_id: int) -> None:
    _may_act(
        actor,
        unit_id,
        Role.UNIT_LEAD,
        Role.UNIT_ADMIN,
        what="generate the unit's papers",
        what_zh="生成本单位的纸质材料",
    )


def _may_file(actor: Actor, unit_id: int) -> None:
    # As for a hand-filed document: the unit's lead (主要负责人 signs) or the center.
    _may_act(
        actor, unit_id, Role.UNIT_LEAD, what="file the unit's signed papers", what_zh="提交本单位已签署的材料"
    )


def paper_out(paper: GeneratedPaper) -> PaperOut:
    assert paper.id is not None
    return PaperOut(
        id=paper.id,
        unit_id=paper.unit_id,
        kind=PaperKind(paper.kind),
        document_id=paper.document_id,
        sha256=paper.sha256,
        size=paper.size,
        generated_at=paper.generated_at,
        signed_document_id=paper.signed_document_id,
        signed_at=paper.signed_at,
    )


def _pdf_response(pdf: bytes, paper: GeneratedPaper, filename: str) -> Response:
    ascii_name = f"{paper.kind}-{paper.document_id}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            # RFC 6266: an ASCII fallback and the Chinese name in UTF-8.
            "Content-Disposition": (
                f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
            ),
            "X-Document-Id": paper.document_id,
            "X-Document-SHA256": paper.sha256,
        },
    )


@router.post(
    "/units/{unit_id}/papers",
    status_code=201,
    response_class=Response,
    responses={201: {"content": {"application/pdf": {}}, "description": "the PDF, ready to print and sign"}},
    summary="Generate the unit's commitment letter (附件2) or VM service agreement (附件3) as PDF",
)
def generate(
    unit_id: int, body: GenerateIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> Response:
    _may_generate(actor, unit_id)
    paper, rendered = service.generate(session, who, unit_id, body.kind)
    response = _pdf_response(rendered.pdf, paper, rendered.filename)
    response.status_code = 201
    return response


@router.get(
    "/units/{unit_id}/papers", response_model=list[PaperOut], summary="The papers generated for a unit"
)
def list_papers(unit_id: int, session: SessionDep, actor: CurrentActor) -> list[PaperOut]:
    ensure_visible(actor, unit_id, "unit", unit_id)
    return [paper_out(p) for p in service.list_papers(session, unit_id)]


@router.get(
    "/units/{unit_id}/papers/{ref}",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
    summary="A generated paper again, byte for byte (by the id in its footer or its SHA-256)",
)
def get_paper(unit_id: int, ref: str, session: SessionDep, actor: CurrentActor) -> Response:
    ensure_visible(actor, unit_id, "unit", unit_id)
    paper = service.find(session, unit_id, ref)
    return _pdf_response(service.original_bytes(paper), paper, f"{paper.kind}-{paper.document_id}.pdf")


_UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["signer", "signed_on", "file"],
                    "properties": {
                        "signer": {"type": "string", "maxLength": 100},
                        "signed_on": {"type": "string", "format": "date"},
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the signed scan (PDF, PNG, JPEG)",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/units/{unit_id}/papers/{ref}/signed",
    response_model=PaperOut,
    status_code=201,
    openapi_extra=_UPLOAD_SCHEMA,
    summary="File the signed scan of a generated paper (multipart: signer, signed_on, file)",
)
async def file_signed(
    unit_id: int, ref: str, request: Request, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> PaperOut:
    await run_in_threadpool(_may_file, actor, unit_id)
    settings = get_settings()
    declared_length = request.headers.get("content-length", "")
    if declared_length.isdigit() and int(declared_length) > settings.upload_max_bytes + _MULTIPART_OVERHEAD:
        raise errors.PayloadTooLarge(
            f"file: larger than the limit of {settings.upload_max_bytes} bytes",
            message_zh=f"file：文件超过 {settings.upload_max_bytes} 字节的上限",
            field="file",
            rule="max_size",
            limit=settings.upload_max_bytes,
        )
    form = await request.form(max_files=1, max_fields=10)
    try:
        try:
            fields = SignedForm.model_validate(
                {k: form.get(k) for k in ("signer", "signed_on") if isinstance(form.get(k), str)}
            )
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {**e, "loc": ("body", *e["loc"])}
                    for e in exc.errors(include_url=False, include_input=False)
                ]
            ) from None
        part = file_part(form)

        def file_it() -> PaperOut:
            paper = service.file_signed(
                session,
                who,
                unit_id,
                ref,
                signer=fields.signer,
                signed_on=fields.signed_on,
                filename=part.filename,
                content_type=part.content_type or "",
                stream=part.file,
                settings=settings,
            )
            return paper_out(paper)

        return await run_in_threadpool(file_it)
    finally:
        await form.close()


# ---- the contact registry as a spreadsheet (附件1) ------------------------------------------------

_MAX_FILES = 200


@router.get(
    "/units/{unit_id}/forms/contacts.xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX_TYPE: {}}}},
    summary="The 附件1 contact registry as an XLSX template, pre-filled with the unit's current rows",
)
def contact_template(unit_id: int, session: SessionDep, actor: CurrentActor) -> Response:
    ensure_visible(actor, unit_id, "unit", unit_id)
    content, filename = service.contact_template(session, unit_id, show_personal=shows_personal_data(actor))
    return Response(
        content,
        media_type=XLSX_TYPE,
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"contacts-{unit_id}.xlsx\"; filename*=UTF-8''{quote(filename)}"
            )
        },
    )


async def _uploads(request: Request) -> list[service.Upload]:
    settings = get_settings()
    form = await request.form(max_files=_MAX_FILES, max_fields=10)
    try:
        uploads: list[service.Upload] = []
        for part in form.getlist("files"):
            if not isinstance(part, UploadFile):
                continue
            content = await part.read(settings.upload_max_bytes + 1)
            if len(content) > settings.upload_max_bytes:
                raise errors.PayloadTooLarge(
                    f"files: '{part.filename}' is larger than the limit of {settings.upload_max_bytes} bytes",
                    message_zh=f"files：“{part.filename}”超过 {settings.upload_max_bytes} 字节的上限",
                    field="files",
                    rule="max_size",
                    limit=settings.upload_max_bytes,
                )
            uploads.append(service.Upload(part.filename or "upload.xlsx", content))
    finally:
        await form.close()
    if not uploads:
        raise errors.InvalidField(
            "files",
            "required",
            "at least one file part named 'files' is required",
            message_zh="缺少名为 files 的文件",
        )
    return uploads


def _importer_scope(actor: Actor, what: str, what_zh: str) -> int | None:
    """None for the center (any unit), else the caller's own unit (-1 if it has none: matches nothing)."""
    if actor.role in CENTER:
        return None
    if actor.role in (Role.UNIT_LEAD, Role.UNIT_ADMIN):
        return actor.unit_id if actor.unit_id is not None else -1
    raise errors.Forbidden(
        f"role '{actor.role}' may not import {what}",
        message_zh=f"角色“{actor.role}”无权导入{what_zh}",
        role=actor.role.value,
    )


@router.post(
    "/paperwork/imports/contacts",
    summary="Import filled 附件1 files (multipart 'files', one or many): a dry run unless commit=true",
)
async def import_contacts(
    request: Request, session: SessionDep, actor: CurrentActor, who: CurrentWho, commit: bool = False
) -> dict[str, Any]:
    only = _importer_scope(actor, "the contact registry", "网络安全联络通讯录")
    uploads = await _uploads(request)
    return await run_in_threadpool(
        service.import_contacts, session, who, uploads, only_unit=only, commit=commit
    )


@router.get(
    "/units/{unit_id}/forms/systems.xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX_TYPE: {}}}},
    summary="The 附件4 information-system registration form as XLSX, with the unit's systems",
)
def system_template(unit_id: int, session: SessionDep, actor: CurrentActor) -> Response:
    ensure_visible(actor, unit_id, "unit", unit_id)
    content, filename = service.system_template(session, unit_id)
    return Response(
        content,
        media_type=XLSX_TYPE,
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"systems-{unit_id}.xlsx\"; filename*=UTF-8''{quote(filename)}"
            )
        },
    )


@router.post(
    "/paperwork/imports/systems",
    summary="Import filled 附件4 files (multipart 'files', one or many): a dry run unless commit=true",
)
async def import_systems(
    request: Request, session: SessionDep, actor: CurrentActor, who: CurrentWho, commit: bool = False
) -> dict[str, Any]:
    only = _importer_scope(actor, "information systems", "信息系统登记表")
    uploads = await _uploads(request)
    return await run_in_threadpool(
        service.import_systems, session, who, uploads, only_unit=only, commit=commit
    )
