"""/docs: Swagger UI from the portal's own files, nothing from another host."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vmportal.web import static
from vmportal.web.docs import install_docs


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name in ("src", "href", "action") or name.endswith("-url")):
                self.urls.append(value)


def links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


def test_docs_page_references_only_this_server(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    urls = links(r.text)
    assert any("swagger-ui-bundle.js" in u for u in urls)
    assert any("swagger-ui.css" in u for u in urls)
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        assert url.startswith("/"), url
    assert "http://" not in r.text and "https://" not in r.text
    # Every file the page links is really there.
    for url in urls:
        if url.startswith("/static/"):
            assert client.get(url).status_code == 200, url


def test_docs_page_forbids_other_hosts_and_inline_script(client: TestClient) -> None:
    csp = client.get("/docs").headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert "<script>" not in client.get("/docs").text  # the init script is a file


def test_docs_is_configured_for_this_app(client: TestClient) -> None:
    html = client.get("/docs").text
    assert 'data-openapi-url="/openapi.json"' in html
    assert "&#34;validatorUrl&#34;: null" in html  # the public validator is never asked
    assert client.get("/openapi.json").json()["info"]["title"] == "vmportal-demo"


def test_oauth2_redirect_page_is_local(client: TestClient) -> None:
    r = client.get("/docs/oauth2-redirect")
    assert r.status_code == 200
    (script,) = links(r.text)
    assert script.startswith("/static/vendor/swagger-ui/oauth2-redirect.js?v=")
    assert client.get(script).status_code == 200


def test_docs_behind_a_proxy_prefix(vendored: None) -> None:
    app = FastAPI(docs_url=None)
    install_docs(app)
    html = TestClient(app, root_path="/portal").get("/docs").text
    assert 'data-openapi-url="/portal/openapi.json"' in html
    assert all(u.startswith("/portal/") for u in links(html))


def test_install_docs_refuses_an_app_that_still_serves_fastapis_docs() -> None:
    with pytest.raises(ValueError, match="docs_url=None"):
        install_docs(FastAPI())
    with pytest.raises(ValueError, match="openapi_url"):
        install_docs(FastAPI(docs_url=None, openapi_url=None))


def test_docs_says_what_to_run_when_swagger_ui_is_not_installed(
    vendored: None, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    app = FastAPI(docs_url=None)
    install_docs(app)
    monkeypatch.setattr(static, "STATIC_DIR", tmp_path)
    r = TestClient(app).get("/docs")
    assert r.status_code == 503
    assert "scripts/vendor-assets.sh" in r.text
    assert "Swagger UI" in r.text and "尚未安装" in r.text
