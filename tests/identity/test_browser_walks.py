"""In Chromium (Debian's, through Playwright): a unit admin clicks the campus sign-on button on the
log-in page, types their password into the real CAS server's form and lands on the page they asked
for; an unknown person reads the bilingual page; a center operator logs in through the directory
form. The log-in page and the unknown-person page pass axe-core with no serious or critical
violation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.factories import Factory
from tests.identity.conftest import Portal, ldap_settings
from tests.identity.test_cas_login import _unit_admin_of
from tests.support.campus_people import staff
from tests.support.cas_server import CasServer
from tests.support.slapd import Directory
from tests.web_foundation.conftest import AXE, CHROMIUM, CHROMIUM_ARGS, vendored

__all__ = ["vendored"]  # the fixture: vendored assets and compiled catalogs

pytestmark = [
    pytest.mark.xdist_group("identity-servers"),
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _axe(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.fixture
def portal(start_portal: Callable[..., Portal], cas: CasServer, ldap_directory: Directory) -> Portal:
    return start_portal(
        login_methods=["cas", "ldap", "local"],
        cas_server_url=cas.url,
        **ldap_settings(ldap_directory.server),
    )


def _cas_form(page: Page, uid: str, password: str | None = None) -> None:
    page.fill("input[name=username]", uid)
    page.fill("input[name=password]", password or staff(uid).password)
    page.locator("form:has(input[name=password])").locator("[type=submit]").first.click()


def test_a_unit_admin_signs_on_through_the_campus_cas_in_a_browser(
    portal: Portal, browser: Browser, vendored: None, factory: Factory
) -> None:
    _, account = _unit_admin_of(factory, "zhaoliu")
    context = browser.new_context(locale="zh-CN", bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{portal.url}/account")
        expect(page).to_have_url(f"{portal.url}/login?next=/account")
        assert _axe(page) == []
        page.get_by_role("link", name="使用统一身份认证登录").click()
        page.wait_for_url("**/cas/login**")
        _cas_form(page, "zhaoliu")
        page.wait_for_url(f"{portal.url}/account")
        expect(page.locator("main")).to_contain_text(account.username)
    finally:
        context.close()


def test_an_unknown_person_reads_the_page_in_both_languages(
    portal: Portal, browser: Browser, vendored: None, cas: CasServer
) -> None:
    # A campus person of CAS only: in no unit's registry and in no directory group the portal maps
    # (the directory's own staff are center accounts through their groups).
    cas.add_user("zhouqi", "Campus-Visitor-2026!", {"employeeNumber": "20990001", "cn": "周七"})
    context = browser.new_context(locale="en-US", bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{portal.url}/auth/cas/login")
        _cas_form(page, "zhouqi", "Campus-Visitor-2026!")
        page.wait_for_url(f"{portal.url}/auth/cas/callback**")
        body = page.locator("main")
        expect(body).to_contain_text("You are not registered in the portal")
        expect(body).to_contain_text("您尚未在本系统登记")
        expect(body).to_contain_text("网络安全联络通讯录")
        assert _axe(page) == []
    finally:
        context.close()


def test_a_center_operator_logs_in_with_the_directory_form(
    portal: Portal, browser: Browser, vendored: None
) -> None:
    context = browser.new_context(locale="zh-CN", bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{portal.url}/login?next=/account")
        page.get_by_label("信息中心目录账号（LDAP）").check()
        page.get_by_role("textbox", name="用户名").fill("lisi")
        page.get_by_role("textbox", name="密码").fill(staff("lisi").password)
        page.locator("form[action$='/login'] button[type=submit]").click()
        page.wait_for_url(f"{portal.url}/account")
        expect(page.locator("main")).to_contain_text("lisi")
    finally:
        context.close()
