"""The vendored browser files: installed by the install step, served from /static with the right
types and cache headers, gzipped, small enough for the page budget, and re-vendoring is instant."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.web_foundation.conftest import REPO
from vmportal.web import static

GZIP = {"accept-encoding": "gzip, deflate"}

# What every page of the portal loads besides its own HTML (base.html's links).
PAGE_ASSETS = [
    "portal.css",
    "portal.js",
    "favicon.svg",
    "vendor/htmx/htmx.min.js",
    "vendor/icons/icons.svg",
]
# The VM list page must stay under 300 KB transferred with everything; the shared assets may take
# at most this much of it, leaving the rest for the page's own HTML and data.
PAGE_ASSETS_BUDGET = 40_000
# The chart library, loaded only by the pages that draw charts.
ECHARTS_BUDGET = 250_000


def served_size(client: TestClient, relative: str) -> int:
    r = client.get(static.static_url(relative), headers=GZIP)
    assert r.status_code == 200, relative
    return int(r.headers["content-length"])


def test_every_vendored_file_is_installed_and_served(client: TestClient) -> None:
    expected_types = {
        ".js": "text/javascript",
        ".css": "text/css",
        ".svg": "image/svg+xml",
        ".png": "image/png",
    }
    files = static.vendored_files()
    assert {
        "vendor/htmx/htmx.min.js",
        "vendor/echarts/echarts.common.min.js",
        "vendor/swagger-ui/swagger-ui-bundle.js",
        "vendor/icons/icons.svg",
    } <= set(files)
    assert static.missing_vendored_files() == []
    for relative in files:
        path = static.STATIC_DIR / relative
        r = client.get(f"/static/{relative}")
        assert r.status_code == 200, relative
        assert r.content == path.read_bytes(), relative
        assert r.headers["x-content-type-options"] == "nosniff"
        if (kind := expected_types.get(path.suffix)) is not None:
            assert r.headers["content-type"].startswith(kind), relative


def test_vendored_libraries_are_the_pinned_versions(client: TestClient) -> None:
    htmx = client.get("/static/vendor/htmx/htmx.min.js").text
    assert 'version:"2.0.11"' in htmx.replace(" ", "")
    echarts = client.get("/static/vendor/echarts/echarts.common.min.js").text
    assert '"6.1.0"' in echarts


def test_icon_sprite_has_every_icon_the_pages_name(client: TestClient) -> None:
    from vmportal.web.icons import ICONS

    sprite = client.get("/static/vendor/icons/icons.svg").text
    for name in ICONS:
        assert f'<symbol id="{name}"' in sprite, name
    assert "Lucide" in sprite and (static.VENDOR_DIR / "icons" / "LICENSE").is_file()


def test_text_files_are_sent_gzipped_and_revalidate(client: TestClient) -> None:
    r = client.get("/static/portal.css", headers=GZIP)
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.content == (static.STATIC_DIR / "portal.css").read_bytes()  # httpx decoded it
    assert int(r.headers["content-length"]) < len(r.content) / 2
    again = client.get("/static/portal.css", headers=GZIP | {"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    plain = client.get("/static/portal.css", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["etag"] != r.headers["etag"]  # two representations, two tags


def test_fingerprinted_urls_are_cached_for_good_others_revalidated(client: TestClient) -> None:
    url = static.static_url("vendor/htmx/htmx.min.js")
    assert "?v=" in url
    assert client.get(url).headers["cache-control"] == static.IMMUTABLE
    assert client.get("/static/vendor/htmx/htmx.min.js").headers["cache-control"] == "no-cache"
    # A link from a page rendered before an upgrade: the new file, but not cached as the old one.
    assert client.get("/static/vendor/htmx/htmx.min.js?v=0000000000").headers["cache-control"] == "no-cache"


def test_nothing_outside_the_static_folder_is_served(client: TestClient) -> None:
    assert client.get("/static/../i18n.py").status_code == 404
    assert client.get("/static/%2e%2e/i18n.py").status_code == 404
    assert client.get("/static/vendor/../../templates/base.html").status_code == 404
    assert client.get("/static/nope.js").status_code == 404
    assert client.post("/static/portal.css").status_code == 405


def test_static_url_names_the_install_step_when_a_vendored_file_is_missing() -> None:
    with pytest.raises(static.MissingAsset, match=r"vendor-assets\.sh"):
        static.static_url("vendor/nothing/here.js")


def test_page_assets_fit_the_page_budget(client: TestClient) -> None:
    sizes = {relative: served_size(client, relative) for relative in PAGE_ASSETS}
    print("\nassets every page loads, bytes served gzipped:")
    for relative, size in sizes.items():
        print(f"  {relative:40} {size:>8,}")
    print(f"  {'total':40} {sum(sizes.values()):>8,}")
    assert sum(sizes.values()) <= PAGE_ASSETS_BUDGET
    echarts = served_size(client, "vendor/echarts/echarts.common.min.js")
    print(f"  {'vendor/echarts/echarts.common.min.js':40} {echarts:>8,} (chart pages only)")
    assert echarts <= ECHARTS_BUDGET


def test_gzip_matches_what_gzip_itself_makes(client: TestClient) -> None:
    # The in-memory compression is real gzip at level 9: a proxy in front would not do better.
    raw = (static.STATIC_DIR / "vendor/swagger-ui/swagger-ui-bundle.js").read_bytes()
    assert served_size(client, "vendor/swagger-ui/swagger-ui-bundle.js") <= len(gzip.compress(raw, 9)) + 64


def test_revendoring_is_instant_and_leaves_the_files_alone(vendored: None) -> None:
    before = {f: (static.STATIC_DIR / f).stat().st_mtime_ns for f in static.vendored_files()}
    started = time.monotonic()
    out = subprocess.run(
        [str(REPO / "scripts/vendor-assets.sh")], cwd=REPO, check=True, capture_output=True, text=True
    )
    assert time.monotonic() - started < 5
    assert "installing" not in out.stdout
    after = {f: (static.STATIC_DIR / f).stat().st_mtime_ns for f in static.vendored_files()}
    assert after == before


def _tree_without_npm(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of what the vendoring script reads, and a PATH with every tool of this machine but
    Node.js and npm: a fresh machine that lacks them."""
    tree = tmp_path / "repo"
    for relative in ["scripts/vendor-assets.sh", "scripts/catalogs.sh", "vmportal/web/icons.py"]:
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, tree / relative)
    shutil.copytree(REPO / "vmportal/web/assets", tree / "vmportal/web/assets")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(folder).iterdir():
            if (
                tool.name not in ("npm", "npx", "node", "nodejs", "corepack")
                and not (bin_dir / tool.name).exists()
            ):
                (bin_dir / tool.name).symlink_to(tool)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "VMPORTAL_ASSET_CACHE": str(tmp_path / "cache")}
    return tree, env


def test_a_machine_without_npm_is_told_what_to_install(tmp_path: Path) -> None:
    tree, env = _tree_without_npm(tmp_path)
    result = subprocess.run(
        ["bash", str(tree / "scripts/vendor-assets.sh")], cwd=tree, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "npm is not installed" in result.stderr
    assert "apt-get install nodejs npm" in result.stderr
    assert not (tree / "vmportal/web/static/vendor").exists()


def test_the_lock_file_names_no_registry_host() -> None:
    lock = (REPO / "vmportal/web/assets/package-lock.json").read_text()
    assert "http://" not in lock and "https://" not in lock
    assert os.path.getsize(REPO / "vmportal/web/assets/package-lock.json") > 1000
