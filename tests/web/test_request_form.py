"""申请虚拟机 against the live demo portal: the form shows the unit's quota left and its paperwork
before submitting; bad input is shown beside each field with its rule, in Chinese and in English,
the entered values kept and nothing written; a unit without its signed agreement is refused naming
rule paperwork; a good request lands on its own page, as through the API. Other roles are refused
naming the rule; a post without its CSRF token is refused. In Chromium at phone width (zh) and
desktop (en): the walk with axe-core (no serious or critical violation), screenshots kept."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
from playwright.sync_api import Browser, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.pagekit import sign_in
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS

__all__ = ["shots"]  # the module fixture, imported


@contextlib.contextmanager
def _pages(live: Live, username: str, role: Role = Role.UNIT_ADMIN, **kwargs: Any) -> Iterator[httpx.Client]:
    with live.client(**kwargs) as c:
        r = c.post("/login", data={"username": username, "password": PASSWORDS[role], "next": "/"})
        assert r.status_code == 303, r.text
        yield c


def _form(c: httpx.Client) -> tuple[str, list[str]]:
    page = c.get("/requests/new")
    assert page.status_code == 200, page.text
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token is not None
    return token.group(1), re.findall(r'<option value="(\d+:[^"]+)"', page.text)


def _errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="field-error" id="f-(\w+)-error">.*?<span>(.*?)</span>', html, re.S))


def _request_ids(c: httpx.Client) -> list[int]:
    return [int(i) for i in re.findall(r'data-request="(\d+)"', c.get("/requests").text)]


BAD = {"system_id": "", "system_name": "", "purpose": "", "hostname": "bad_name!", "template": ""}
BAD |= {"vcpus": "0", "memory_gib": "many", "disk_gib": "40", "pool_id": ""}


def test_bad_input_beside_each_field_values_kept_nothing_written(live: Live) -> None:
    with _pages(live, "cs-admin") as c:
        page = c.get("/requests/new")
        assert 'data-paperwork="complete"' in page.text and 'data-quota="vcpus"' in page.text
        token, _templates = _form(c)
        before = _request_ids(c)
        r = c.post("/requests/new", data={"csrf_token": token, **BAD})
        assert r.status_code == 422
        errs = _errors(r.text)
        assert "string_pattern_mismatch" in errs["hostname"] and "字母" in errs["hostname"]
        assert "至少为 1" in errs["vcpus"] and "greater_than_equal" in errs["vcpus"]
        assert "整数" in errs["memory_gib"] and "请选择模板" in errs["template"]
        assert 'value="bad_name!"' in r.text and 'value="many"' in r.text  # kept as typed
        assert 'aria-invalid="true"' in r.text and "请修改以下 5 处错误" in r.text
        assert _request_ids(c) == before

        assert c.post("/requests/new", data=BAD).status_code == 403  # no CSRF token

    with _pages(live, "cs-admin", headers={"Accept-Language": "en"}) as c:
        token, _templates = _form(c)
        errs = _errors(c.post("/requests/new", data={"csrf_token": token, **BAD}).text)
        assert errs["vcpus"] == "At least 1 (rule greater_than_equal)"
        assert "Enter a whole number" in errs["memory_gib"]


def test_paperwork_refusal_and_a_good_request(live: Live) -> None:
    with _pages(live, "lib-admin") as c:  # 图书馆: no signed VM agreement on file
        page = c.get("/requests/new")
        assert 'data-paperwork="missing"' in page.text and "虚拟机服务协议书" in page.text
        token, templates = _form(c)
        good = {**BAD, "hostname": "lib-web", "template": templates[0], "vcpus": "2", "memory_gib": "4"}
        good |= {"system_name": "图书馆门户", "purpose": "teaching"}
        r = c.post("/requests/new", data={"csrf_token": token, **good})
        assert r.status_code == 403 and "规则 paperwork" in r.text
        assert 'value="lib-web"' in r.text and "图书馆门户" in r.text
        assert _request_ids(c) == []

    with _pages(live, "cs-admin") as c:
        token, templates = _form(c)
        good = {**BAD, "hostname": "course-lab", "template": templates[0], "vcpus": "2", "memory_gib": "4"}
        good |= {"system_name": "课程实验平台", "purpose": "teaching"}
        r = c.post("/requests/new", data={"csrf_token": token, **good})
        assert r.status_code == 303 and re.fullmatch(r"/requests/\d+", r.headers["location"])
        page = c.get(r.headers["location"])
        assert "course-lab" in page.text and "已提交" in page.text

    with _pages(live, "cs-lead", Role.UNIT_LEAD) as c:
        r = c.get("/requests/new")
        assert r.status_code == 403 and "request.submit" in r.text


def test_request_form_in_chromium(live: Live, browser: Browser, vendored: None, shots: Shots) -> None:
    for locale, width, error_text in (("zh-CN", 375, "至少为 1"), ("en-US", 1280, "At least 1")):
        context = browser.new_context(
            locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True
        )
        page = context.new_page()
        try:
            sign_in(page, live.base_url, "cs-admin", Role.UNIT_ADMIN, "/requests/new")
            shots.both(page, "request-form")
            assert axe_violations(page) == []
            page.locator("#f-system_id").select_option(index=1)
            page.locator("#f-hostname").fill(f"web-{width}")
            page.locator("#f-template").select_option(index=1)
            page.locator("#f-vcpus").fill("0")
            page.locator("form.request-form button[type=submit]").click()
            expect(page.locator("#f-vcpus-error")).to_contain_text(error_text)
            expect(page.locator("#f-hostname")).to_have_value(f"web-{width}")
            shots.both(page, "request-form-error")
            assert axe_violations(page) == []
            page.locator("#f-vcpus").fill("2")
            page.locator("form.request-form button[type=submit]").click()
            page.wait_for_url(re.compile(r".*/requests/\d+$"))
            expect(page.locator("main")).to_contain_text(f"web-{width}")
        finally:
            context.close()
