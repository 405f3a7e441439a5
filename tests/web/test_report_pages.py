"""报表 against the live demo portal: a Suricata alert on a CS VM opens an incident; the auditor, the
operator and the center admin read /reports (the incident counted in this month's row; every report's
table; the audit log's link lands); bad period input is refused beside its field with the service's
rule (date_parsing, period_order, period_too_long, period_in_future; the threshold's range), the values
kept; the CSV (UTF-8 with BOM, Chinese headers) and XLSX downloads are the API's files; a unit's admin
is refused naming the rule (reports.read); English too; one Chromium pass per language at phone and
desktop width with axe-core (no serious or critical violation), the two ECharts charts drawn;
screenshots at desktop and phone width under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

import io
import json
import re

import pytest
from openpyxl import load_workbook
from playwright.sync_api import Browser, Page, expect

from policies.roles import Role
from tests.production.harness import wait_for
from tests.security.helpers import suricata_c2
from tests.web.conftest import Live
from tests.web.pagekit import as_user
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS
from vmportal.kit.clock import beijing_today

API = "/api/v1"
__all__ = ["shots"]


@pytest.fixture(scope="module")
def incident(live: Live) -> int:
    """One incident opened this month by a Suricata alert on a CS VM."""
    with live.client() as c:
        vms = c.get(f"{API}/vms", headers=live.login("cs-admin", Role.UNIT_ADMIN)).json()["items"]
        vm = sorted(vms, key=lambda v: v["id"])[0]
        source = c.post(
            f"{API}/alert-sources",
            json={"name": "report-ids", "kind": "suricata", "auth": "bearer"},
            headers=live.login("center-admin", Role.CENTER_ADMIN),
        )
        assert source.status_code == 201, source.text
        posted = c.post(
            f"{API}/alerts/report-ids",
            content=json.dumps(suricata_c2(vm["ip_address"])).encode(),
            headers={"Authorization": f"Bearer {source.json()['token']}", "Content-Type": "application/json"},
        )
        assert posted.status_code == 202, posted.text
    headers = live.login("operator", Role.CENTER_OPERATOR)

    def opened() -> int | None:
        with live.client() as c:
            items = c.get(f"{API}/incidents", params={"vm_id": vm["id"]}, headers=headers).json()["items"]
        return int(items[0]["id"]) if items else None

    return wait_for(opened, timeout=60, what="the incident of the alert")


def _field_error(html: str, name: str) -> str:
    m = re.search(rf'id="f-{name}-error"[^>]*>(.*?)</p>', html, re.S)
    assert m is not None, f"no error beside {name}"
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def _this_month_total(html: str) -> int:
    section = html.split('data-report="incidents-monthly"', 1)[1].split("</section>", 1)[0]
    month = f"{beijing_today():%Y-%m}"
    m = re.search(rf"<tr><td>{month}</td><td class=\"num\">(\d+)</td>", section)
    assert m is not None, section[:2000]
    return int(m.group(1))


def test_the_center_reads_every_report(live: Live, incident: int) -> None:
    for username, role in (
        ("auditor", Role.AUDITOR),
        ("operator", Role.CENTER_OPERATOR),
        ("center-admin", Role.CENTER_ADMIN),
    ):
        with as_user(live, username, role) as c:
            page = c.get("/reports")
            assert page.status_code == 200, page.text
            assert 'href="/reports"' in page.text  # in the navigation of the center's roles
            for name in (
                "provisioning",
                "incidents-monthly",
                "quarantine",
                "repeat-offenders",
                "overdue-findings",
                "compliance",
                "quota",
            ):
                assert f'data-report="{name}"' in page.text
                assert (
                    f'data-download="{name}-csv"' in page.text and f'data-download="{name}-xlsx"' in page.text
                )
            assert (
                "按期率(%)" in page.text and "计算机科学与技术学院" in page.text and "vCPU配额" in page.text
            )
            assert _this_month_total(page.text) >= 1
            assert 'class="report-chart"' in page.text  # the incidents chart has something to draw
    with as_user(live, "auditor", Role.AUDITOR) as c:  # the audit log's link lands
        log = c.get("/audit-log")
        assert log.status_code == 200 and 'href="/reports"' in log.text
        assert c.get("/reports").status_code == 200


def test_bad_period_input_is_shown_beside_its_field(live: Live) -> None:
    today = beijing_today()
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        bad = c.get("/reports", params={"since": "2026-13-01", "until": "2026-12-01"})
        assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text
        assert "date_parsing" in _field_error(bad.text, "since") and "YYYY-MM-DD" in _field_error(
            bad.text, "since"
        )
        assert 'value="2026-13-01"' in bad.text and 'value="2026-12-01"' in bad.text  # kept
        assert 'data-report="provisioning"' not in bad.text  # no figures for a bad period
        order = c.get("/reports", params={"since": "2026-12-05", "until": "2026-12-01"})
        assert order.status_code == 422 and "period_order" in _field_error(order.text, "since")
        assert "不能晚于截止日期" in _field_error(order.text, "since")
        long = c.get("/reports", params={"since": "2020-01-01", "until": "2026-12-01"})
        assert long.status_code == 422 and "period_too_long" in _field_error(long.text, "until")
        future = c.get(
            "/reports", params={"since": f"{today.year + 1}-01-01", "until": f"{today.year + 1}-02-01"}
        )
        assert future.status_code == 422 and "period_in_future" in _field_error(future.text, "since")
        threshold = c.get("/reports", params={"threshold": "0"})
        assert threshold.status_code == 422 and "1 至 1000" in _field_error(threshold.text, "threshold")
        assert "range" in _field_error(threshold.text, "threshold")
        # A changed download link answers the page with the error, never a file or a 5xx.
        changed = c.get("/reports/download/provisioning.csv", params={"since": "2026-02-30"})
        assert changed.status_code == 422 and "date_parsing" in changed.text
        assert c.get("/reports/download/nothing.csv").status_code == 404
        assert c.get("/reports/download/provisioning.pdf").status_code == 404


def test_the_downloads_are_the_apis_files(live: Live, incident: int) -> None:
    today = beijing_today()
    period = {"since": f"{today:%Y-%m}-01", "until": today.isoformat()}
    with as_user(live, "auditor", Role.AUDITOR) as c:
        page = c.get("/reports", params=period)
        assert page.status_code == 200
        link = re.search(r'href="([^"]+)" data-download="incidents-monthly-csv"', page.text)
        assert link is not None
        csv = c.get(link.group(1).replace("&amp;", "&"))
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert csv.content.startswith("\ufeff".encode()) and "月份,事件总数" in csv.text
        assert f"{today:%Y-%m}" in csv.text
        xlsx = c.get("/reports/download/committee.xlsx", params={**period, "threshold": "1"})
        assert xlsx.status_code == 200
        book = load_workbook(io.BytesIO(xlsx.content))
        assert book.sheetnames[0] == "汇总" and "安全事件月度统计" in book.sheetnames
        assert "配额使用情况" in book.sheetnames
        # The committee's one-page summary, linked beside the workbook, is the API's PDF.
        pdf_link = re.search(r'href="([^"]+)" data-download="committee-pdf"', page.text)
        assert pdf_link is not None
        pdf = c.get(pdf_link.group(1).replace("&amp;", "&"))
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF-")
        assert c.get("/reports/download/quota.pdf").status_code == 404
        quota = c.get("/reports/download/quota.csv")
        assert quota.status_code == 200 and quota.text.lstrip("\ufeff").startswith("unit_code,unit_name_zh")
        assert c.get("/reports/download/quota.xlsx").status_code == 200
    with live.client() as api:  # the same bytes as the API's CSV
        r = api.get(
            f"{API}/reports/incidents-monthly",
            params={**period, "format": "csv"},
            headers=live.login("auditor", Role.AUDITOR),
        )
        assert r.status_code == 200 and r.content == csv.content


def test_a_unit_admin_is_refused_naming_the_rule(live: Live) -> None:
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        page = c.get("/reports")
        assert page.status_code == 403 and "reports.read" in page.text
        assert "只有信息中心工作人员和检查人员可以查看" in page.text
        assert 'href="/reports"' not in c.get("/vms").text  # not in a unit's navigation
        assert c.get("/reports/download/compliance.csv").status_code == 403


def test_the_reports_in_english(live: Live, incident: int) -> None:
    with as_user(live, "auditor", Role.AUDITOR, headers={"Accept-Language": "en"}) as c:
        page = c.get("/reports")
        assert page.status_code == 200 and "Provisioning on time" in page.text
        assert "On time (%)" in page.text and "Quota use per unit" in page.text
        bad = c.get("/reports", params={"since": "yesterday"})
        assert bad.status_code == 422 and "Enter a date as YYYY-MM-DD" in _field_error(bad.text, "since")
        order = c.get("/reports", params={"since": "2026-12-05", "until": "2026-12-01"})
        assert "must not be after until" in _field_error(order.text, "since")
        threshold = c.get("/reports", params={"threshold": "x"})
        assert "Enter a whole number from 1 to 1000" in _field_error(threshold.text, "threshold")
    with as_user(live, "cs-admin", Role.UNIT_ADMIN, headers={"Accept-Language": "en"}) as c:
        refused = c.get("/reports")
        assert (
            refused.status_code == 403
            and "only the center's staff and the auditor" in refused.text.replace("&#39;", "'")
        )


def _log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login?next=/reports")
    page.locator("#username").fill("auditor")
    page.locator("#password").fill(PASSWORDS[Role.AUDITOR])
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}/reports")


def test_the_reports_in_chromium(
    live: Live, incident: int, browser: Browser, vendored: None, shots: Shots
) -> None:
    # Under the portal's own Content-Security-Policy (no inline script or style) the charts draw.
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        _log_in(page, live.base_url)
        for name in ("incidents-monthly", "provisioning"):
            chart = page.locator(f"#report-{name} .report-chart")
            if chart.count():
                expect(chart).to_have_attribute("data-drawn", "1")
        assert errors == []
    finally:
        context.close()
    for locale, width in (("zh-CN", 375), ("zh-CN", 1280), ("en-US", 375), ("en-US", 1280)):
        # axe-core is injected as an inline script: the test's contexts bypass the CSP for it.
        context = browser.new_context(
            locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True
        )
        page = context.new_page()
        try:
            _log_in(page, live.base_url)
            chart = page.locator("#report-incidents-monthly .report-chart")
            expect(chart).to_have_attribute("data-drawn", "1")
            expect(chart.locator("canvas")).to_have_count(1)
            shots.take(page, "reports")
            assert axe_violations(page) == []
            if width != 1280:
                continue
            # The period form: a bad date shown beside its field, the typed value kept.
            page.locator("#f-since").fill("2026-02-30")
            page.get_by_role("button", name="显示报表" if locale == "zh-CN" else "Show the reports").click()
            expect(page.locator("#f-since-error")).to_contain_text("date_parsing")
            expect(page.locator("#f-since")).to_have_value("2026-02-30")
            shots.take(page, "reports-error")
            assert axe_violations(page) == []
            # The audit log's link to the reports lands.
            page.goto(f"{live.base_url}/audit-log")
            page.locator(".chain-status a", has_text="报表" if locale == "zh-CN" else "Reports").click()
            page.wait_for_url(f"{live.base_url}/reports")
            expect(page.locator("#report-provisioning-title")).to_be_visible()
        finally:
            context.close()
