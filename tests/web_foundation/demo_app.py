"""A tiny portal built only from vmportal.web's foundations, as the real app will use them: Swagger
UI at /docs (install_docs), /static, the language middleware and switch, and one page rendered from
base.html with every macro. The browser tests run it under uvicorn; the others through TestClient.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from vmportal.web import i18n, language, templating
from vmportal.web.docs import install_docs

TEMPLATES = templating.templates(Path(__file__).parent / "templates")
NOW = datetime(2026, 12, 1, 6, 5, tzinfo=UTC)

# The demo page's own words (a real page's would be in the catalogs).
TEXT: dict[str, dict[str, str]] = {
    "zh_CN": {
        "title": "虚拟机",
        "vms": "虚拟机列表",
        "search": "搜索",
        "power_on": "开机",
        "power_off": "关机",
        "power_off_confirm": "确定关闭 {name}？虚拟机中未保存的工作将丢失。",
        "suspended_reason": "因安全事件已暂停：信息中心核实整改报告后恢复。",
        "request": "申请虚拟机",
        "hostname": "主机名",
        "hostname_hint": "字母、数字和连字符",
        "hostname_error": "主机名只能包含字母、数字和连字符",
        "purpose": "用途",
        "description": "信息系统说明",
        "description_error": "请填写信息系统说明",
        "teaching": "教学",
        "research": "科研",
        "management": "管理",
        "submit": "提交申请",
        "name": "名称",
        "unit": "所属单位",
        "power": "电源",
        "security": "安全状态",
        "memory": "内存",
        "deadline": "到期时间",
        "ip": "IP 地址",
        "actions": "操作",
        "powered_off": "已提交关机操作。",
        "flash": "马克思主义学院（思想政治理论课教学研究部）的 2 台虚拟机将在 3 天内到期，请及时续期。",
    },
    "en": {
        "title": "Virtual machines",
        "vms": "Virtual machine list",
        "search": "Search",
        "power_on": "Power on",
        "power_off": "Power off",
        "power_off_confirm": "Power off {name}? Unsaved work in the VM is lost.",
        "suspended_reason": "Suspended for a security incident: the center restores it after verifying the rectification report.",
        "request": "Request a VM",
        "hostname": "Host name",
        "hostname_hint": "Letters, digits and hyphens",
        "hostname_error": "A host name may contain only letters, digits and hyphens",
        "purpose": "Purpose",
        "description": "About the information system",
        "description_error": "Describe the information system",
        "teaching": "Teaching",
        "research": "Research",
        "management": "Management",
        "submit": "Submit request",
        "name": "Name",
        "unit": "Unit",
        "power": "Power",
        "security": "Security",
        "memory": "Memory",
        "deadline": "Due",
        "ip": "IP address",
        "actions": "Actions",
        "powered_off": "Power-off requested.",
        "flash": "2 VMs of the School of Marxism expire within 3 days; renew them in time.",
    },
}

VMS: list[dict[str, Any]] = [
    {
        "name": "jwc-course-selection-system-production-frontend-01",
        "unit": "马克思主义学院（思想政治理论课教学研究部）",
        "power": "running",
        "security": "normal",
        "memory_gib": 16,
        "deadline": NOW + timedelta(days=3, hours=4, minutes=20),
        "ip": "10.20.30.41",
    },
    {
        "name": "lib-search",
        "unit": "图书馆（文献信息中心、档案馆、博物馆）",
        "power": "stopped",
        "security": "suspended",
        "memory_gib": 8,
        "deadline": NOW - timedelta(hours=5),
        "ip": "10.20.30.42",
    },
    {
        "name": "kyc-data",
        "unit": "科学技术研究院",
        "power": "suspended",
        "security": "rectification_submitted",
        "memory_gib": 0.5,
        "deadline": NOW + timedelta(minutes=30),
        "ip": "10.20.30.43",
    },
    {
        "name": "hq-portal",
        "unit": "后勤管理处",
        "power": "unknown",
        "security": "restored",
        "memory_gib": 4,
        "deadline": NOW + timedelta(days=200),
        "ip": "10.20.30.44",
    },
]


class Pong(BaseModel):
    pong: bool
    language: str


def create_app() -> FastAPI:
    app = FastAPI(title="vmportal-demo", version="0.0.1", docs_url=None)
    install_docs(app)
    app.add_middleware(i18n.LocaleMiddleware)
    app.include_router(language.router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/ping", tags=["health"], response_model=Pong)
    def ping() -> Pong:
        """Answers with the language the API would have chosen (none: the API is bilingual)."""
        return Pong(pong=True, language=i18n.current_locale())

    @app.get("/demo", response_class=HTMLResponse)
    def demo(request: Request, sort: str = "name", order: str = "asc") -> HTMLResponse:
        t = TEXT[i18n.current_locale()]
        columns = [
            {"key": "name", "label": t["name"], "sortable": True},
            {"key": "unit", "label": t["unit"], "sortable": True},
            {"key": "power", "label": t["power"]},
            {"key": "security", "label": t["security"]},
            {"key": "memory", "label": t["memory"], "sortable": True, "numeric": True},
            {"key": "deadline", "label": t["deadline"], "sortable": True},
            {"key": "ip", "label": t["ip"]},
            {"key": "actions", "label": t["actions"]},
        ]
        context = {
            "t": t,
            "page_title": t["title"],
            "nav": [
                {"url": "/demo", "label": t["title"], "icon": "vm", "active": True},
                {"url": "/docs", "label": "API", "icon": "info"},
            ],
            "user": {"display_name": "张三", "role_label": "单位网络安全管理员"},
            "csrf_token": "demo-token",
            "flashes": [("warning", t["flash"])],
            "columns": columns,
            "vms": VMS,
            "now": NOW,
            "sort": sort,
            "order": order,
            "query": request.query_params,
            "errors": {"hostname": t["hostname_error"], "description": t["description_error"]},
            "labels": {"hostname": t["hostname"], "purpose": t["purpose"], "description": t["description"]},
        }
        return TEMPLATES.TemplateResponse(request, "demo.html", context)

    @app.post("/demo/power/{row}", response_class=HTMLResponse)
    def power_off(row: int, request: Request) -> HTMLResponse:
        # What an htmx action answers: the fragment that replaces the row's actions.
        token = request.headers.get("x-csrf-token", "")
        message = TEXT[i18n.current_locale()]["powered_off"]
        return HTMLResponse(f'<p class="powered-off" data-token="{token}">{message}</p>')

    return app


app = create_app()
