"""The OpenAPI description made whole: every error status an operation can answer is listed, with the
one error envelope every error carries (the framework lists only 2xx and its own 422 shape, which is
not what the portal answers)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from vmportal.app import inputs

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["code", "message", "message_zh"],
    "properties": {
        "code": {
            "type": "string",
            "description": "Machine-readable reason, e.g. validation_error, policy_denied",
        },
        "message": {"type": "string", "description": "In English"},
        "message_zh": {"type": "string", "description": "In Chinese (中文说明)"},
        "fields": {
            "type": "array",
            "description": "The fields that broke a rule (validation errors)",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "rule": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
        "rule": {"type": "string", "description": "The deciding rule (policy denials)"},
        "state": {"type": "string", "description": "The record's current state (409)"},
    },
    "additionalProperties": True,
}
ENVELOPE_SCHEMA: dict[str, Any] = {
    "title": "ErrorEnvelope",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"$ref": "#/components/schemas/Error"}},
}

_DESCRIPTIONS = {
    "400": "Malformed request (e.g. the body is not JSON) · 请求格式错误",
    "401": "Not logged in, or the token/signature is missing, expired or wrong · 未登录或凭据无效",
    "403": "Your role or a rule of the agreement does not allow this (rule named) · 无权限或规则不允许",
    "404": "No such record, or one of another unit · 记录不存在",
    "405": "This address does not take this method (see Allow) · 不支持此请求方法",
    "409": "The record's state does not allow this action now (the state is named) · 当前状态不允许此操作",
    "410": "Gone: shown once and no more · 已失效",
    "413": "The request body is too large · 请求体过大",
    "415": "Unsupported body type · 不支持的请求体格式",
    "422": "A field breaks a rule (the field and rule are named) · 输入校验失败",
    "423": "The account is locked for a while after failed log-ins · 账号已临时锁定",
    "429": "Too many requests; wait as Retry-After says · 请求过于频繁",
    "502": "The hypervisor refused or failed (its message is given) · 虚拟化平台返回错误",
    "503": "Busy right now; try again as Retry-After says · 服务繁忙",
}


def _statuses(path: str, method: str, op: dict[str, Any]) -> list[str]:
    statuses = ["401", "403", "404", "422", "429", "503"]
    if "requestBody" in op:
        statuses += ["400", "413", "415"]
    if method in ("post", "put", "patch", "delete"):
        statuses += ["409", "502"]
    if path.endswith("/auth/login"):
        statuses.append("423")
    if "credential" in path:
        statuses.append("410")
    return statuses


def build(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    inputs.describe(spec)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["ErrorEnvelope"] = ENVELOPE_SCHEMA
    # The framework's own 422 shape is never answered (the portal's envelope is).
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    for path, item in spec.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            for status in _statuses(path, method, op) + [s for s in responses if s[0] in "45"]:
                entry = responses.setdefault(status, {"description": _DESCRIPTIONS.get(status, "Error")})
                if status == "422" or "content" not in entry or "HTTPValidationError" in str(entry):
                    entry["description"] = _DESCRIPTIONS.get(status, entry.get("description", "Error"))
                    entry["content"] = envelope
    return spec


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
