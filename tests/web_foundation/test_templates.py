"""base.html and _macros.html render in both languages, and render what a reader (or a screen
reader) relies on: labels tied to inputs, errors beside their fields, explained disabled buttons,
sortable headers that keep the filters, a pager."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import jinja2
import pytest
from fastapi.testclient import TestClient

from vmportal.web import templating
from vmportal.web.i18n import use_locale

ENV = templating.make_environment()


def render(source: str, locale: str = "zh_CN", **context: object) -> str:
    with use_locale(locale):
        return ENV.from_string(source).render(**context)


@pytest.fixture
def page(client: TestClient) -> str:
    return client.get("/demo?q=lib&sort=unit&order=asc").text


@pytest.fixture
def page_en(client: TestClient) -> str:
    return client.get("/demo?q=lib&sort=unit&order=asc", headers={"accept-language": "en"}).text


def test_base_layout_in_chinese(page: str) -> None:
    assert '<html lang="zh-CN">' in page
    assert "<title>虚拟机 · 网络与信息中心虚拟机服务平台</title>" in page
    assert '<a class="skip-link" href="#main">跳到主要内容</a>' in page
    assert '<main id="main"' in page
    assert 'aria-label="主导航"' in page and 'aria-current="page"' in page
    assert "退出登录" in page and "张三" in page and "单位网络安全管理员" in page
    assert 'name="csrf_token" value="demo-token"' in page
    assert 'hx-headers=\'{"X-CSRF-Token": "demo-token"}\'' in page
    assert '<div class="flash flash-warning" role="alert">' in page
    assert "请确认" in page and ">取消</button>" in page and ">确认</button>" in page
    assert "网络与信息中心 · vmportal" in page


def test_base_layout_in_english(page_en: str) -> None:
    assert '<html lang="en">' in page_en
    assert "NIC VM Service Portal</title>" in page_en
    assert "Skip to main content" in page_en and "Log out" in page_en and "Please confirm" in page_en
    # The layout alone, with every optional part shown: no Chinese is left but the language
    # switch's own name for Chinese.
    layout = render(
        '{% extends "base.html" %}',
        "en",
        page_title="VMs",
        user={"display_name": "Zhang San", "role_label": "unit admin"},
        csrf_token="t",
        nav=[{"url": "/vms", "label": "VMs", "active": True}],
        flashes=[("success", "Saved"), ("error", "Failed"), ("bogus", "Shown as info")],
    )
    assert re.findall(r"[\u4e00-\u9fff]+", layout) == ["中文"]
    assert 'class="flash flash-info" role="status"' in layout  # an unknown category is shown, as info


def test_page_links_only_local_fingerprinted_assets(page: str) -> None:
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert {a.split("?")[0] for a in assets} >= {
        "/static/portal.css",
        "/static/portal.js",
        "/static/vendor/htmx/htmx.min.js",
        "/static/favicon.svg",
    }
    assert all("?v=" in a for a in assets)
    assert "http://" not in page and "https://" not in page
    assert "<style" not in page and not re.search(r"<script(?![^>]*\bsrc=)", page)  # CSP-ready


def test_badges_name_each_state(page: str, page_en: str) -> None:
    for word in ("运行中", "已关机", "已挂起", "状态未知", "正常", "已暂停", "已提交整改", "已恢复"):
        assert f"<span>{word}</span>" in page, word
    for word in (
        "Running",
        "Stopped",
        "Suspended",
        "Unknown",
        "Normal",
        "Rectification submitted",
        "Restored",
    ):
        assert f"<span>{word}</span>" in page_en, word
    assert 'class="badge badge-danger"' in page  # the security suspension stands out


def test_form_fields_have_labels_and_errors_beside_them(page: str) -> None:
    for name in ("hostname", "purpose", "description", "q"):
        assert f'<label for="f-{name}">' in page, name
        assert f'id="f-{name}"' in page, name
    field = re.search(r'<div class="field field-invalid">\s*<label for="f-hostname">.*?</div>', page, re.S)
    assert field is not None
    html = field.group(0)
    assert '<p class="field-error" id="f-hostname-error">' in html and "主机名只能包含字母" in html
    assert 'aria-describedby="f-hostname-hint f-hostname-error"' in html and 'aria-invalid="true"' in html
    assert "required" in html
    assert "aria-invalid" not in re.search(r'<select id="f-purpose".*?>', page).group(0)  # type: ignore[union-attr]
    assert '<option value="research" selected>科研</option>' in page
    summary = re.search(r'<div class="error-summary".*?</div>', page, re.S).group(0)  # type: ignore[union-attr]
    assert "请修改以下 2 处错误" in summary and 'href="#f-hostname"' in summary


def test_a_disabled_button_says_why(page: str) -> None:
    match = re.search(
        r'<button type="button" class="btn btn-primary" aria-disabled="true" aria-describedby="(tip-\d+)">',
        page,
    )
    assert match is not None
    assert f'<span class="tooltip" role="tooltip" id="{match.group(1)}">因安全事件已暂停' in page


def test_confirm_button_posts_after_confirmation(page: str) -> None:
    form = re.search(r'<form method="post" action="/demo/power/1"[^>]*>', page).group(0)  # type: ignore[union-attr]
    assert 'hx-post="/demo/power/1"' in form
    assert 'hx-confirm="确定关闭 jwc-course-selection-system-production-frontend-01？' in form
    assert 'hx-target="#actions-1"' in form


def test_sortable_headers_keep_the_filters_and_say_the_order(page: str) -> None:
    assert re.search(
        r'<th scope="col" aria-sort="ascending">\s*<a class="sort-link" href="\?q=lib&amp;sort=unit&amp;order=desc">',
        page,
    )
    assert re.search(
        r'<th scope="col" aria-sort="none">\s*<a class="sort-link" href="\?q=lib&amp;sort=name&amp;order=asc">',
        page,
    )
    assert '<th scope="col">电源</th>' in page  # not sortable: a plain header
    assert '<th scope="col" class="num" aria-sort="none">' in page
    assert '<div class="table-scroll" role="region" aria-label="虚拟机列表" tabindex="0">' in page


def test_pager(page: str, page_en: str) -> None:
    assert "共 93 条 · 第 2 / 5 页" in page
    assert "93 items · page 2 of 5" in page_en
    assert '<a href="?q=lib&amp;sort=unit&amp;order=asc&amp;page=1" rel="prev">' in page
    assert '<span class="pager-current" aria-current="page">2</span>' in page


def test_pager_edges_and_singular() -> None:
    src = '{% import "_macros.html" as m %}{{ m.pager(1, 1, 1) }}'
    assert "1 item · page 1 of 1" in render(src, "en")
    assert "<ul>" not in render(src, "en")
    last = render('{% import "_macros.html" as m %}{{ m.pager(3, 3, 30) }}', "en")
    assert 'rel="prev"' in last and 'rel="next"' not in last and 'class="pager-off"' in last


def test_empty_table_says_so() -> None:
    src = (
        '{% import "_macros.html" as m %}{% call m.data_table([{"key": "a", "label": "A"}], "VMs", '
        "rows_count=0) %}<tr><td>never</td></tr>{% endcall %}"
    )
    html = render(src)
    assert "暂无数据。" in html and "never" not in html


def test_values_are_escaped() -> None:
    src = '{% import "_macros.html" as m %}{{ m.field("x", label, value=value, error=error) }}{{ m.badge(label) }}'
    html = render(src, label="<b>单位</b>", value='"><script>alert(1)</script>', error="<i>bad</i>")
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;b&gt;单位&lt;/b&gt;" in html


def test_translated_messages_escape_their_arguments() -> None:
    html = render('{{ _("page %(page)d", page=3) }}|{{ ngettext("%(num)d item", "%(num)d items", n) }}', n=5)
    assert html == "第 3 页|共 5 条"


def test_filters_are_installed() -> None:
    now = datetime(2026, 12, 1, 6, 5, tzinfo=UTC)
    html = render("{{ t|local_time }} {{ 16|gib }} {{ 1536|data_size }} {{ 12345|number }}", "en", t=now)
    assert html == "2026-12-01 14:05 16 GiB 1.5 KiB 12,345"


def test_a_missing_variable_fails_loudly() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("{{ vm.name }}")


def test_an_unknown_icon_fails_loudly() -> None:
    with pytest.raises(KeyError, match="unknown icon"):
        render('{{ icon("unicorn") }}')
