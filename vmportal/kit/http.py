"""What every route of the JSON API shares and that knows no domain: the request's unit of work and
reading the bearer token. (The current user and role gates live in :mod:`vmportal.identity.deps`.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlmodel import Session
from starlette.datastructures import FormData, UploadFile

from vmportal.kit import db, errors

#: Methods whose routes only read: their unit of work takes no write lock (see db.transaction).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed when the route returns, rolled back on any error,
    so a failed request never leaves anything half-written. A GET only reads (no route answering
    GET changes anything), so on SQLite it never waits for a writer."""
    with db.transaction(read_only=request.method in READ_METHODS) as session:
        yield session


# scope="function": commit (and dispatch the outbox) when the route returns, *before* the answer is
# sent. With FastAPI's default scope the exit code of a yield dependency runs after the response has
# gone out: a client would hold a 200/202 for a change not yet committed (lost if the process dies
# in between, or if the commit fails), and could read the old state right after it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def bearer_from_header(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None for any other."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def request_bearer_token(request: Request) -> str | None:
    """The request's bearer token, read from the header directly (no security dependency)."""
    return bearer_from_header(request.headers.get("authorization", ""))


#: The OpenAPI security of an endpoint that reads the token with request_bearer_token.
BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


def file_part(form: FormData, name: str = "file") -> UploadFile:
    """The uploaded file of a multipart form's part ``name``; a 422 naming the part when the form has
    none (or has a plain field by that name)."""
    part = form.get(name)
    if not isinstance(part, UploadFile):
        raise errors.InvalidField(
            name, "required", f"a file part named '{name}' is required", message_zh=f"缺少名为 {name} 的文件"
        )
    return part
