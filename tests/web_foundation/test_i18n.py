"""Languages: the catalogs compile and are complete, and each request gets the language its reader
chose or their browser asks for, Chinese by default."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from tests.web_foundation.conftest import REPO
from vmportal.web import i18n
from vmportal.web.language import safe_next

PYBABEL = str(REPO / ".venv" / "bin" / "pybabel")
LOCALE = REPO / "vmportal" / "web" / "locale"


def _catalog(locale: str) -> Catalog:
    with (LOCALE / locale / "LC_MESSAGES" / "messages.po").open("rb") as fp:
        return read_po(fp, locale=locale)


def test_catalogs_compile_without_errors(tmp_path: Path) -> None:
    for locale in i18n.SUPPORTED_LOCALES:
        po = LOCALE / locale / "LC_MESSAGES" / "messages.po"
        mo = tmp_path / f"{locale}.mo"
        result = subprocess.run(
            [PYBABEL, "compile", "-i", str(po), "-o", str(mo)], capture_output=True, text=True, check=True
        )
        assert "error" not in result.stderr.lower(), result.stderr
        assert mo.stat().st_size > 0
    # And the install step left compiled catalogs beside the sources.
    assert (LOCALE / "zh_CN" / "LC_MESSAGES" / "messages.mo").is_file()


def test_chinese_catalog_translates_every_message() -> None:
    untranslated = []
    for message in _catalog("zh_CN"):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            untranslated.append(message.id)
    assert untranslated == []


def test_catalog_template_is_up_to_date_with_the_code(tmp_path: Path) -> None:
    """A message added to a template or to vmportal's code without `scripts/catalogs.sh update`
    would show in English to Chinese readers: the committed catalogs must know every one."""
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [PYBABEL, "-q", "extract", "-F", "vmportal/web/babel.cfg", "-o", str(pot), "vmportal"],
        cwd=REPO,
        check=True,
    )
    with pot.open("rb") as fp:
        extracted = {(m.context, m.id) for m in read_po(fp) if m.id}
    known = {(m.context, m.id) for m in _catalog("zh_CN") if m.id}
    assert extracted - known == set(), "run scripts/catalogs.sh update and translate the new messages"


def test_a_stale_compiled_catalog_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An edited .po whose .mo was not rebuilt: the page shows the edit, not the old translation.
    folder = tmp_path / "zh_CN" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    shutil.copy(LOCALE / "zh_CN" / "LC_MESSAGES" / "messages.mo", folder / "messages.mo")
    po = (LOCALE / "zh_CN" / "LC_MESSAGES" / "messages.po").read_text(encoding="utf-8")
    (folder / "messages.po").write_text(po.replace('msgstr "取消"', 'msgstr "算了"'), encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.translations.cache_clear()
    try:
        with i18n.use_locale("zh_CN"):
            assert i18n.gettext("Cancel") == "算了"
    finally:
        i18n.translations.cache_clear()


@pytest.mark.parametrize(
    ("accept_language", "lang", "word"),
    [
        (None, "zh-CN", "跳到主要内容"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN", "跳到主要内容"),
        ("en-US,en;q=0.9", "en", "Skip to main content"),
        ("en-GB", "en", "Skip to main content"),
        ("zh-TW,en;q=0.5", "zh-CN", "跳到主要内容"),
        ("fr-FR,fr;q=0.9", "zh-CN", "跳到主要内容"),
        ("fr-FR, en;q=0.5", "en", "Skip to main content"),
        ("zh;q=0.4, en;q=0.8", "en", "Skip to main content"),
        ("en;q=0, zh", "zh-CN", "跳到主要内容"),
        ("*", "zh-CN", "跳到主要内容"),
        ("garbage;;;,,q=x", "zh-CN", "跳到主要内容"),
    ],
)
def test_page_language_follows_the_browser(
    client: TestClient, accept_language: str | None, lang: str, word: str
) -> None:
    headers = {"accept-language": accept_language} if accept_language else {}
    r = client.get("/demo", headers=headers)
    assert r.status_code == 200
    assert f'<html lang="{lang}">' in r.text
    assert word in r.text
    assert r.headers["content-language"] == lang
    assert "Accept-Language" in r.headers["vary"]


def test_the_language_switch_wins_over_the_browser(client: TestClient) -> None:
    r = client.get("/lang/en", params={"next": "/demo?sort=unit"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/demo?sort=unit"
    cookie = r.headers["set-cookie"]
    assert f"{i18n.LOCALE_COOKIE}=en" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    page = client.get("/demo?sort=unit", headers={"accept-language": "zh-CN"})
    assert '<html lang="en">' in page.text and "Log out" in page.text
    back = client.get("/lang/zh_CN", params={"next": "/demo"})  # follows the redirect
    assert '<html lang="zh-CN">' in back.text and "退出登录" in back.text


def test_the_switch_links_back_to_the_page_it_is_on(client: TestClient) -> None:
    html = client.get("/demo?sort=unit&order=desc").text
    assert 'href="/lang/en?next=/demo%3Fsort%3Dunit%26order%3Ddesc"' in html
    assert 'lang="zh-CN" hreflang="zh-CN" aria-current="true">中文</a>' in html


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "",
        "demo",
        "/ok\r\nSet-Cookie: x=1",
    ],
)
def test_the_switch_is_no_open_redirect(client: TestClient, target: str) -> None:
    r = client.get("/lang/en", params={"next": target}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/"


def test_an_unknown_language_is_not_found(client: TestClient) -> None:
    assert client.get("/lang/fr", follow_redirects=False).status_code == 404


def test_the_json_api_is_left_alone(client: TestClient) -> None:
    r = client.get("/api/v1/ping", headers={"accept-language": "en"})
    assert r.json()["language"] == "zh_CN"  # no negotiation: the API answers in both languages
    assert "content-language" not in r.headers


def test_negotiation_order() -> None:
    assert i18n.negotiate() == "zh_CN"
    assert i18n.negotiate(accept_language="en") == "en"
    assert i18n.negotiate(user_setting="en", accept_language="zh") == "en"
    assert i18n.negotiate(cookie="zh_CN", user_setting="en", accept_language="en") == "zh_CN"
    assert i18n.negotiate(cookie="klingon", accept_language="en") == "en"
    assert i18n.parse_accept_language("en;q=0.3, zh-CN;q=0.3, zh;q=0.9") == ["zh_CN", "en"]
    assert i18n.parse_accept_language("x" * 10_000) == []


def test_gettext_follows_the_active_language() -> None:
    assert i18n.current_locale() == "zh_CN"
    assert i18n.gettext("Cancel") == "取消"
    with i18n.use_locale("en"):
        assert i18n.gettext("Cancel") == "Cancel"
        assert i18n.ngettext("%(num)d item", "%(num)d items", 2) % {"num": 2} == "2 items"
        assert i18n.ngettext("%(num)d item", "%(num)d items", 1) % {"num": 1} == "1 item"
    assert i18n.ngettext("%(num)d item", "%(num)d items", 2) % {"num": 2} == "共 2 条"
    assert i18n.pgettext("power state", "Suspended") == "已挂起"
    assert i18n.pgettext("security state", "Suspended") == "已暂停"
    with pytest.raises(ValueError, match="unsupported"):
        i18n.activate("fr")


def test_safe_next_keeps_local_paths() -> None:
    assert safe_next("/vms?unit=3&page=2") == "/vms?unit=3&page=2"
    assert safe_next("/") == "/"
