"""How every error answers: one JSON envelope, ``{"error": {"code", "message", "message_zh", …}}``,
with the field, rule, state or record that explains it, in English and entirely in Chinese.

Nothing escapes as a plain-text 500: an unexpected exception answers the envelope (and is logged with
the request id); a database too busy right now answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from vmportal.app.inputs import printable
from vmportal.kit import context, db, errors
from vmportal.kit.labels import field_name_zh

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait when the portal is saturated.
RETRY_AFTER = "2"

_PARAM_LOCATIONS = ("body", "query", "path", "header", "cookie")

# Pydantic's error types in Chinese; {name} are the error's context values.
_RULES_ZH: dict[str, str] = {
    "missing": "必填",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "int_from_float": "应为整数",
    "float_parsing": "应为数字",
    "float_type": "应为数字",
    "bool_parsing": "应为布尔值（true 或 false）",
    "bool_type": "应为布尔值（true 或 false）",
    "string_type": "应为文本",
    "string_too_short": "长度至少为 {min_length}",
    "string_too_long": "长度不能超过 {max_length}",
    "string_pattern_mismatch": "格式不正确",
    "too_short": "至少需要 {min_length} 项",
    "too_long": "至多 {max_length} 项",
    "greater_than": "必须大于 {gt}",
    "greater_than_equal": "不能小于 {ge}",
    "less_than": "必须小于 {lt}",
    "less_than_equal": "不能大于 {le}",
    "multiple_of": "必须是 {multiple_of} 的倍数",
    "enum": "应为以下取值之一：{expected}",
    "literal_error": "应为以下取值之一：{expected}",
    "extra_forbidden": "不允许出现此字段",
    "list_type": "应为列表",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "datetime_parsing": "应为日期时间（ISO 8601，带时区）",
    "datetime_type": "应为日期时间（ISO 8601，带时区）",
    "datetime_from_date_parsing": "应为日期时间（ISO 8601，带时区）",
    "timezone_aware": "日期时间须带时区",
    "date_parsing": "应为日期（YYYY-MM-DD）",
    "date_from_datetime_parsing": "应为日期（YYYY-MM-DD）",
    "date_type": "应为日期（YYYY-MM-DD）",
    "ip_v4_address": "应为 IPv4 地址",
    "ip_any_address": "应为 IP 地址",
    "ip_any_network": "应为网络地址段（CIDR）",
    "ip_v4_network": "应为 IPv4 网络地址段（CIDR）",
    "url_parsing": "应为网址",
    "url_type": "应为网址",
    "url_scheme": "网址协议不被接受",
    "value_error": "取值无效",
    "assertion_error": "取值无效",
    "uuid_parsing": "格式不正确",
    "string_unicode": "含有无效的字符（不成对的代理项），应为合法的文本",
    "json_invalid": "不是合法的 JSON",
    "union_tag_invalid": "类型不被接受",
}

# The JSON decoder's messages (json.JSONDecodeError.msg) in Chinese.
_JSON_ZH: dict[str, str] = {
    "Expecting value": "此处应为一个值",
    "Expecting property name enclosed in double quotes": "属性名须用英文双引号括起",
    "Expecting ',' delimiter": "此处缺少逗号",
    "Expecting ':' delimiter": "此处缺少冒号",
    "Unterminated string starting at": "字符串没有结束",
    "Extra data": "JSON 结束后还有多余内容",
    "Invalid control character at": "含有不允许的控制字符",
    "Invalid \\escape": "含有不合法的转义",
    "Invalid \\uXXXX escape": "含有不合法的 \\u 转义",
}


def _printable(value: Any) -> Any:
    """The envelope fit for UTF-8: a field name or message quoting the caller's text may hold a lone
    surrogate (JSON ``"\\ud800"``), which would fail the answer's encoding (a 500 instead of the 422)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def _error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": _printable(body)}, status_code=status, headers=headers)


def _rule_zh(e: dict[str, Any]) -> str:
    template = _RULES_ZH.get(str(e.get("type")), "取值无效")
    ctx = {k: v for k, v in (e.get("ctx") or {}).items() if isinstance(v, str | int | float)}
    try:
        return template.format(**ctx)
    except (KeyError, IndexError):
        return template.split("{")[0].rstrip("：") or "取值无效"


def _where(loc: list[str]) -> str:
    return ".".join(p for p in loc if p not in _PARAM_LOCATIONS) or ".".join(loc)


def _line_and_column(body: bytes, pos: int) -> tuple[int, int]:
    text = body.decode("utf-8", "replace")
    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


def validation_fields(exc: RequestValidationError) -> list[tuple[dict[str, Any], str]]:
    """Each error as (the field, its rule and the message; the message in Chinese)."""
    out = []
    for e in exc.errors():
        where = _where([str(p) for p in e.get("loc", ())])
        field = {"field": where, "rule": e.get("type", "invalid"), "message": e.get("msg", "")}
        out.append((field, f"{field_name_zh(where)}：{_rule_zh(e)}"))
    return out


async def _malformed_json(request: Request, e: dict[str, Any]) -> JSONResponse:
    loc = e.get("loc", ())
    pos = int(loc[1]) if len(loc) > 1 and str(loc[1]).isdigit() else 0
    line, column = _line_and_column(await request.body(), pos)
    reason = str((e.get("ctx") or {}).get("error", "invalid JSON"))
    reason_zh = _JSON_ZH.get(reason, "语法错误")
    return _error(
        400,
        {
            "code": "malformed_json",
            "message": f"request body is not valid JSON: {reason} at line {line}, column {column}",
            "message_zh": f"请求体不是合法的 JSON：第 {line} 行第 {column} 列{reason_zh}",
            "line": line,
            "column": column,
            "fields": [{"field": "body", "rule": "json_invalid", "message": reason}],
        },
    )


_HTTP_ZH = {
    400: "请求有误",
    401: "需要登录",
    403: "无权执行此操作",
    404: "请求的地址不存在",
    405: "该地址不支持此请求方法",
    406: "无法提供所要求的格式",
    413: "请求体过大",
    415: "不支持的请求体格式",
    429: "请求过于频繁，请稍后再试",
    503: "服务繁忙，请稍后再试",
}
_HTTP_EN = {404: "no such address", 405: "this address does not accept this method"}


#: The methods a 405's Allow may name, in the order it names them.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Keys of the scope that routing writes; a probe starts without them.
_ROUTING_KEYS = ("fastapi", "route", "endpoint", "path_params")


def allow(app: Any, scope: Scope, raised: str = "") -> str:
    """The Allow header of a 405: every method some route of the address answers.

    The router raises 405 from the first route whose path matches, naming that route's methods
    only; an address served by two routes (``GET /pools`` and ``POST /pools``, declared apart) was
    answered ``Allow: GET``. So the address is matched again, once per method, against every route
    of the app. ``raised``: what the router named, kept in any case."""
    allowed = {m.strip().upper() for m in raised.split(",") if m.strip()}
    for method in _METHODS:
        if method in allowed:
            continue
        probe = {k: v for k, v in scope.items() if k not in _ROUTING_KEYS}
        probe["method"] = method
        for route in app.router.routes:
            if route.matches(probe)[0] is Match.FULL:
                allowed.add(method)
                break
    return ", ".join(m for m in (*_METHODS, *sorted(allowed - set(_METHODS))) if m in allowed)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.PortalError)
    async def portal_error(_: Request, exc: errors.PortalError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 429 or exc.status == 503:
            headers = {**(headers or {}), "Retry-After": str(exc.extra.get("retry_after", RETRY_AFTER))}
        return _error(exc.status, exc.body(), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        for e in exc.errors():
            if e.get("type") == "json_invalid":  # not JSON at all: a syntax error, not a field's rule
                return await _malformed_json(request, e)
        fields = validation_fields(exc)
        return _error(
            422,
            {
                "code": "validation_error",
                "message": "; ".join(f"{f['field']}: {f['message']}" for f, _ in fields),
                "message_zh": "输入校验失败：" + "；".join(zh for _, zh in fields),
                "fields": [f for f, _ in fields],
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        detail = str(exc.detail)
        message = _HTTP_EN.get(status, detail) if detail in ("Not Found", "Method Not Allowed") else detail
        headers = dict(exc.headers) if exc.headers else {}
        if status == 405:
            headers["Allow"] = allow(request.app, request.scope, headers.get("Allow", ""))
        return _error(
            status,
            {"code": "http_error", "message": message, "message_zh": _HTTP_ZH.get(status, "请求未能完成")},
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if db.is_busy(exc):
            log.warning("%s %s: database busy, answered 503: %s", request.method, request.url.path, exc)
            return _error(
                503,
                {
                    "code": "busy",
                    "message": "the portal is busy right now; try again in a moment",
                    "message_zh": "服务繁忙，请稍后再试",
                },
                headers={"Retry-After": RETRY_AFTER},
            )
        log.exception("%s %s failed (request %s)", request.method, request.url.path, context.request_id.get())
        return _error(
            500,
            {
                "code": "internal_error",
                "message": "an unexpected error; nothing was changed. The request id names it in the log.",
                "message_zh": "服务器内部错误，本次操作未做任何更改。请将请求编号告知网络与信息中心。",
                "request_id": context.request_id.get(),
            },
        )
