"""Every number the API takes fits the database, and booleans are not numbers (nor numbers booleans).

Both databases store integers as signed 64-bit values. An integer outside that range used to reach
the driver and fail there (``OverflowError``: a 500 in plain text); JSON ``true`` used to pass as
1 vCPU and ``0`` as ``false``, because pydantic's lax mode converts between them. Rather than relying
on every schema and every route parameter of every domain to remember both rules, the app applies
them once, when it is built, to every input it declares:

- every integer parameter (path, query, header, cookie) and every integer field of every body model
  gets the bounds of a signed 64-bit integer unless it already has tighter ones; the bound shows in
  the OpenAPI description as ``minimum``/``maximum`` and a value outside answers 422 naming the field;
- every integer field of a body refuses a JSON boolean, and every boolean field refuses a number
  (``int_type`` / ``bool_type``, the usual 422). Strings keep pydantic's usual reading ("4", "true"),
  so form posts of the pages, which are all strings, are read as before.

The models are changed in place (their fields' metadata, then rebuilt), so a page handler or a CLI
command that validates the same schema gets the same rules. Route parameters are checked by an
app-wide dependency (``int64_params``) that reads the matched route's integer parameters: FastAPI
builds each included route's parameter validators again per inclusion, so changing them after the
fact would not hold; the OpenAPI states the same bounds (``describe``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import annotated_types as at
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator
from pydantic_core import PydanticCustomError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_DONE = "__vmportal_inputs_bounded__"


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer, not a boolean")
    return value


def _not_a_number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "Input should be a valid boolean (true or false)")
    return value


_INT_GUARD = BeforeValidator(_not_a_bool)
_NUMERIC = (at.Gt, at.Ge, at.Lt, at.Le, at.MultipleOf)
_BOOL_GUARD = BeforeValidator(_not_a_number)


def _plain(annotation: Any) -> set[type]:
    """The scalar types an annotation admits: ``int | None`` → {int, NoneType}."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _plain(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: set[type] = set()
        for arg in typing.get_args(annotation):
            found |= _plain(arg)
        return found
    return {annotation} if isinstance(annotation, type) else set()


def _bounded(metadata: list[Any]) -> tuple[bool, bool]:
    low = any(isinstance(m, at.Ge | at.Gt) for m in metadata)
    high = any(isinstance(m, at.Le | at.Lt) for m in metadata)
    return low, high


def _add_bounds(metadata: list[Any]) -> bool:
    low, high = _bounded(metadata)
    if not low:
        metadata.append(at.Ge(INT64_MIN))
    if not high:
        metadata.append(at.Le(INT64_MAX))
    return not (low and high)


def _is_int(kinds: set[type]) -> bool:
    # bool is a subclass of int; an int field is one that admits int and not bool.
    return int in kinds and bool not in kinds


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _all_models(roots: Iterable[type[BaseModel]]) -> list[type[BaseModel]]:
    """The models reachable from the roots through their fields, innermost first."""
    seen: dict[type[BaseModel], None] = {}
    visiting: set[type[BaseModel]] = set()

    def visit(model: type[BaseModel]) -> None:
        if model in seen or model in visiting:  # a recursive model does not loop
            return
        visiting.add(model)
        for field in model.model_fields.values():
            for inner in _models_in(field.annotation):
                visit(inner)
        visiting.discard(model)
        seen[model] = None

    for root in roots:
        visit(root)
    return list(seen)


def _harden_model(model: type[BaseModel]) -> bool:
    if model.__dict__.get(_DONE) or getattr(model, "__tablename__", None):
        return False  # done already, or a table (its columns are the database's business)
    changed = False
    for field in model.model_fields.values():
        kinds = _plain(field.annotation)
        if _is_int(kinds) and kinds == {int, type(None)}:
            # ``int | None``: the rules go on the integer, not on the union. On the union, with the
            # guard ahead of them, pydantic checked the bounds itself on every value: ``None > 0``,
            # a TypeError, which answered 500 for a JSON null.
            numeric = [m for m in field.metadata if isinstance(m, _NUMERIC)]
            field.metadata[:] = [m for m in field.metadata if not isinstance(m, _NUMERIC)]
            _add_bounds(numeric)
            field.annotation = Annotated[int, *numeric, _INT_GUARD] | None
            changed = True
        elif _is_int(kinds):
            changed |= _add_bounds(field.metadata)
            # Last, so that it runs first (a before-validator wraps what precedes it) and the bounds
            # stay on the integer schema, stated in the OpenAPI as minimum/maximum.
            field.metadata.append(_INT_GUARD)
            changed = True
        elif bool in kinds:
            field.metadata.insert(0, _BOOL_GUARD)
            changed = True
    setattr(model, _DONE, True)
    return changed


_INT_PARAMS: dict[int, list[tuple[str, str]]] = {}


def _int_params(route: Any) -> list[tuple[str, str]]:
    """(location, name) of the route's integer parameters, worked out once per route."""
    key = id(route)
    found = _INT_PARAMS.get(key)
    if found is None:
        found = []
        stack = [getattr(route, "dependant", None)]
        while stack:
            dependant = stack.pop()
            if dependant is None:
                continue
            stack.extend(dependant.dependencies)
            for location, fields in (
                ("path", dependant.path_params),
                ("query", dependant.query_params),
                ("header", dependant.header_params),
                ("cookie", dependant.cookie_params),
            ):
                for field in fields:
                    if _is_int(_plain(field.field_info.annotation)):
                        found.append((location, field.alias))
        _INT_PARAMS[key] = found
    return found


def _out_of_range(raw: str) -> bool:
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isdigit() or len(digits) < 19:
        return False
    return not INT64_MIN <= int(text) <= INT64_MAX


def int64_params(request: Request) -> None:
    """An app-wide dependency: an integer parameter outside signed 64 bits is a 422 naming it."""
    route = request.scope.get("route")
    if route is None:
        return
    errors: list[dict[str, Any]] = []
    for location, name in _int_params(route):
        values: list[str]
        if location == "path":
            value = request.path_params.get(name)
            values = [value] if isinstance(value, str) else []
        elif location == "query":
            values = request.query_params.getlist(name)
        elif location == "header":
            values = request.headers.getlist(name)
        else:
            cookie = request.cookies.get(name)
            values = [cookie] if cookie is not None else []
        for value in values:
            if _out_of_range(value):
                high = not value.strip().startswith("-")
                errors.append(
                    {
                        "type": "less_than_equal" if high else "greater_than_equal",
                        "loc": (location, name),
                        "msg": f"Input should be {'less' if high else 'greater'} than or equal to "
                        f"{INT64_MAX if high else INT64_MIN}",
                        "input": value,
                        "ctx": {"le": INT64_MAX} if high else {"ge": INT64_MIN},
                    }
                )
    if errors:
        raise RequestValidationError(errors)


def _unicode_errors(value: Any, loc: tuple[str | int, ...], out: list[dict[str, Any]]) -> None:
    if isinstance(value, str):
        if not _encodable(value):
            out.append(
                {
                    "type": "string_unicode",
                    "loc": loc,
                    "msg": "Input should be a valid string, unable to parse raw data as a unicode string",
                    "input": printable(value),
                }
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            where = (*loc, printable(key))
            if not _encodable(key):
                out.append(
                    {
                        "type": "string_unicode",
                        "loc": where,
                        "msg": "Field names should be valid unicode strings",
                        "input": printable(key),
                    }
                )
            _unicode_errors(item, where, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _unicode_errors(item, (*loc, i), out)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` with lone surrogates written as escapes (``\\ud800``), fit for UTF-8."""
    return text if _encodable(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


async def unicode_body(request: Request) -> None:
    """An app-wide dependency: a JSON body whose text holds a lone surrogate (``"\\ud800"``: valid
    JSON, not valid Unicode) is a 422 naming the field, wherever it sits, keys included. Pydantic
    refuses it in ``str`` fields, but not in free-form ones (``dict[str, Any]``), nor in the names
    of fields; there it reached the database or the UTF-8 encoding of the answer, a 500.

    Reads the body FastAPI has already decoded (Starlette keeps it on the request); a route without
    a JSON body costs nothing."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None or not hasattr(request, "_json"):
        return
    errors: list[dict[str, Any]] = []
    _unicode_errors(await request.json(), ("body",), errors)
    if errors:
        raise RequestValidationError(errors)


def describe(spec: dict[str, Any]) -> None:
    """State the parameters' bounds in the OpenAPI description (``minimum``/``maximum``)."""

    def bound(schema: dict[str, Any]) -> None:
        if schema.get("type") == "integer":
            schema.setdefault("minimum", INT64_MIN)
            schema.setdefault("maximum", INT64_MAX)
        for branch in schema.get("anyOf", []):
            bound(branch)

    for item in spec.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict):
                for param in op.get("parameters", []):
                    bound(param.get("schema", {}))


def _dependants(route: APIRoute) -> Iterator[Any]:
    stack: list[Any] = [route.dependant]
    while stack:
        dependant = stack.pop()
        yield dependant
        stack.extend(dependant.dependencies)


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        original = getattr(route, "original_router", None)  # an included router
        if original is not None:
            yield from _api_routes(original.routes)


def install(app: FastAPI) -> None:
    """Apply both rules to every body model of ``app``'s routes (idempotent: models are changed
    once). Parameters are checked by ``int64_params``, which the app lists as a dependency."""
    roots: list[type[BaseModel]] = []
    for route in _api_routes(app.routes):
        for dependant in _dependants(route):
            for field in dependant.body_params:
                roots.extend(_models_in(field.field_info.annotation))
    models = _all_models(roots)
    if [m for m in models if _harden_model(m)]:
        # All of them, innermost first, so that an outer model's rebuilt schema embeds the new
        # rules of the models it contains.
        for model in models:
            model.model_rebuild(force=True)
