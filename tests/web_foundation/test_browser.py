"""In a real browser (Debian's Chromium, driven by Playwright) against the demo app under a real
uvicorn: Swagger UI renders offline, the pages pass axe-core, fit a phone, and their confirm
dialog, disabled buttons and menu behave; the layout page and Swagger UI leave their screenshots at
desktop and phone width under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.web.screens import Shots, shots
from tests.web_foundation.conftest import AXE

pytestmark = pytest.mark.slow
__all__ = ["shots"]  # the module fixture, imported


class Recorder:
    """Every request the page makes; any to another host is recorded and refused, so a test can
    both prove the page is self-contained and never send traffic off this machine."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.foreign: list[str] = []

    def route(self, route: Route, request: Request) -> None:
        self.urls.append(request.url)
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            self.foreign.append(request.url)
            route.abort()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Any]:
    contexts = []

    def open_(
        url: str, *, locale: str = "zh-CN", width: int = 1280, height: int = 900
    ) -> tuple[Page, Recorder, list[str]]:
        context = browser.new_context(locale=locale, viewport={"width": width, "height": height})
        contexts.append(context)
        recorder = Recorder()
        context.route("**/*", recorder.route)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        return page, recorder, errors

    yield open_
    for context in contexts:
        context.close()


def test_swagger_ui_renders_offline_and_talks_only_to_this_server(
    live_server: str, open_page: Any, shots: Shots
) -> None:
    page, recorder, errors = open_page(f"{live_server}/docs", locale="en-US")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("vmportal-demo")
    shots.both(page, "swagger-ui")
    operation = page.locator("#operations-health-ping_api_v1_ping_get")
    expect(operation).to_be_visible()
    # Use it as a script writer would: open the operation, try it out, execute.
    operation.locator(".opblock-summary").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
    expect(operation.locator(".live-responses-table")).to_contain_text('"pong": true')

    assert recorder.foreign == []
    paths = {urlsplit(u).path for u in recorder.urls}
    assert {
        "/docs",
        "/openapi.json",
        "/api/v1/ping",
        "/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "/static/vendor/swagger-ui/swagger-ui.css",
        "/static/swagger-init.js",
    } <= paths
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in recorder.urls if u.startswith("http"))
    assert errors == []  # no script error, and nothing the page's CSP had to block


def _axe(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def _describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}" for v in violations
    )


@pytest.mark.parametrize(("locale", "lang"), [("zh-CN", "zh-CN"), ("en-US", "en")])
@pytest.mark.parametrize("width", [1280, 375])
def test_page_from_base_layout_has_no_serious_accessibility_violations(
    live_server: str, open_page: Any, shots: Shots, locale: str, lang: str, width: int
) -> None:
    page, recorder, errors = open_page(f"{live_server}/demo", locale=locale, width=width)
    expect(page.locator("html")).to_have_attribute("lang", lang)
    shots.take(page, "base-layout")
    assert page.evaluate("() => window.htmx && window.htmx.version").startswith("2.")
    violations = _axe(page)
    assert violations == [], _describe(violations)
    assert recorder.foreign == [] and errors == []


def test_axe_does_catch_what_it_is_there_to_catch(live_server: str, open_page: Any) -> None:
    # The check above means something only if axe really runs on these pages: break two rules.
    page, _, _ = open_page(f"{live_server}/demo")
    page.evaluate(
        """() => document.querySelector("main").insertAdjacentHTML("beforeend",
             '<p style="color:#bbb">浅灰色文字</p><input name="unlabelled">')"""
    )
    assert {v["id"] for v in _axe(page)} >= {"color-contrast", "label"}


def test_page_fits_a_phone(live_server: str, open_page: Any) -> None:
    page, _, _ = open_page(f"{live_server}/demo", width=375, height=800)
    # Nothing pushes the page wider than the screen: the wide table scrolls inside its own box.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    table_box = page.locator(".table-scroll")
    assert table_box.evaluate("e => e.scrollWidth > e.clientWidth")
    # The long Chinese unit name wraps inside its cell.
    cell = page.get_by_role("cell", name="马克思主义学院（思想政治理论课教学研究部）")
    assert cell.evaluate("e => e.getBoundingClientRect().height") > 40
    # The navigation folds behind the menu button and opens with it.
    nav_link = page.get_by_role("navigation", name="主导航").get_by_role("link", name="虚拟机")
    expect(nav_link).to_be_hidden()
    toggle = page.get_by_role("button", name="菜单")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(nav_link).to_be_visible()


def test_confirm_dialog_guards_a_power_action(live_server: str, open_page: Any) -> None:
    page, recorder, errors = open_page(f"{live_server}/demo")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    actions = page.locator("#actions-1")
    dialog = page.locator("#confirm-dialog")

    actions.get_by_role("button", name="关机").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("确定关闭 jwc-course-selection-system-production-frontend-01？")
    expect(dialog.get_by_role("button", name="取消")).to_be_focused()  # the safe answer is the default
    dialog.get_by_role("button", name="取消").click()
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(300)
    assert posts == []

    actions.get_by_role("button", name="关机").click()
    dialog.get_by_role("button", name="确认").click()
    expect(actions.locator(".powered-off")).to_have_text("已提交关机操作。")
    assert [urlsplit(u).path for u in posts] == ["/demo/power/1"]
    # htmx sent the CSRF token base.html gave it.
    expect(actions.locator(".powered-off")).to_have_attribute("data-token", "demo-token")
    assert recorder.foreign == [] and errors == []


def test_a_disabled_button_explains_itself_and_does_nothing(live_server: str, open_page: Any) -> None:
    page, _, _ = open_page(f"{live_server}/demo")
    button = page.get_by_role("button", name="开机")
    tooltip = page.get_by_role("tooltip")
    expect(tooltip).to_be_hidden()
    button.focus()  # reachable from the keyboard, unlike a plain disabled button
    expect(button).to_be_focused()
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text("因安全事件已暂停")
    expect(button).to_have_accessible_description("因安全事件已暂停：信息中心核实整改报告后恢复。")
    url = page.url
    button.click(force=True)
    page.wait_for_timeout(200)
    assert page.url == url
    expect(page.locator("#confirm-dialog")).to_be_hidden()


def test_keyboard_focus_is_visible(live_server: str, open_page: Any) -> None:
    page, _, _ = open_page(f"{live_server}/demo")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="跳到主要内容")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()  # shown when focused, off-screen otherwise
    page.keyboard.press("Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
