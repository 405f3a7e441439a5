"""The static files of the web pages (vmportal/web/static, mounted at /static): the portal's own
stylesheet and scripts, and the vendored browser libraries under vendor/.

Pages link every file through :func:`static_url`, which adds a fingerprint of the file's content
(``/static/portal.css?v=3f2a9c01be``). A request carrying the current fingerprint is cached by the
browser for a year without asking again; any other request is revalidated (ETag), so an upgrade is
seen at once and an unchanged page costs no request for its assets.

Text files are sent gzipped to clients that accept it, compressed once per file (in a worker
thread) and kept in memory: the portal usually runs without a reverse proxy on a campus intranet,
and the whole static set compresses to well under a megabyte.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Final

import anyio.to_thread
from fastapi import FastAPI
from starlette.datastructures import Headers, QueryParams
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Receive, Scope, Send

STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_PATH: Final = "/static"
VENDOR_DIR: Final = STATIC_DIR / "vendor"
VENDOR_LIST: Final = Path(__file__).parent / "assets" / "vendor.txt"

IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"

# Named here rather than guessed by the mimetypes module, whose answers depend on the host's
# /etc/mime.types (and a wrong script type is refused by browsers under nosniff).
MEDIA_TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
_COMPRESSIBLE: Final = frozenset({".css", ".js", ".mjs", ".json", ".map", ".svg", ".html", ".txt"})
_UNCOMPRESSED_NAMES: Final = frozenset({"LICENSE", "NOTICE"})


class MissingAsset(FileNotFoundError):
    """A page links a static file that is not there: for a vendored file, the install step that
    copies them (scripts/vendor-assets.sh) has not run."""


def media_type(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    if p.name in _UNCOMPRESSED_NAMES:
        return "text/plain; charset=utf-8"
    return MEDIA_TYPES.get(p.suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class _Fingerprint:
    key: tuple[int, int]  # mtime_ns, size
    digest: str
    checked: float  # time.monotonic() of the last stat


_fingerprints: dict[str, _Fingerprint] = {}
#: A file's fingerprint is trusted this long before its stat is asked again: a page of 50 VMs
#: shows a few hundred icons, each naming the sprite, and a stat for each was a tenth of the page's
#: time; an edited file (development) is still picked up within the second.
RECHECK_SECONDS = 1.0


def fingerprint(relative: str) -> str:
    """The first 10 hex digits of the SHA-256 of a static file, recomputed only when it changes."""
    known = _fingerprints.get(relative)
    now = time.monotonic()
    if known is not None and now - known.checked < RECHECK_SECONDS:
        return known.digest
    path = STATIC_DIR / relative
    try:
        st = path.stat()
    except FileNotFoundError:
        hint = " (run scripts/vendor-assets.sh)" if relative.startswith("vendor/") else ""
        raise MissingAsset(f"static file {relative!r} is missing{hint}") from None
    key = (st.st_mtime_ns, st.st_size)
    if known is None or known.key != key:
        known = _Fingerprint(key, hashlib.sha256(path.read_bytes()).hexdigest()[:10], now)
    else:
        known = _Fingerprint(key, known.digest, now)
    _fingerprints[relative] = known
    return known.digest


def static_url(relative: str, *, root_path: str = "") -> str:
    """The URL of a static file, with its fingerprint (``root_path``: the app's mount prefix behind a
    proxy, from the request's scope)."""
    relative = relative.lstrip("/")
    return f"{root_path}{STATIC_PATH}/{relative}?v={fingerprint(relative)}"


def vendored_files() -> list[str]:
    """The files scripts/vendor-assets.sh puts under static/vendor/ (relative to static/)."""
    files = ["vendor/icons/icons.svg"]
    for line in VENDOR_LIST.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            files.append("vendor/" + line.split()[1])
    return files


def missing_vendored_files() -> list[str]:
    return [f for f in vendored_files() if not (STATIC_DIR / f).is_file()]


@dataclass(frozen=True)
class _Compressed:
    key: tuple[int, int]  # mtime_ns, size
    body: bytes


class PortalStaticFiles(StaticFiles):
    """Starlette's static files with the portal's content types, cache headers and in-memory gzip."""

    def __init__(self, directory: str | os.PathLike[str] = STATIC_DIR) -> None:
        super().__init__(directory=directory)
        self._root = Path(directory).resolve()
        self._fingerprinted = self._root == STATIC_DIR.resolve()  # static_url's folder
        self._compressed: dict[str, _Compressed] = {}
        self._lock = threading.Lock()

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        request_headers = Headers(scope=scope)
        media = media_type(full_path)
        compressible = Path(full_path).suffix.lower() in _COMPRESSIBLE
        headers = {
            "cache-control": self._cache_control(full_path, scope),
            "x-content-type-options": "nosniff",
        }
        if compressible:
            headers["vary"] = "Accept-Encoding"
        if compressible and status_code == 200 and _accepts_gzip(request_headers):
            headers |= {
                "content-encoding": "gzip",
                # From the file's stat, like Starlette's own tag: a revalidation is answered
                # without reading or compressing anything.
                "etag": f'"{stat_result.st_mtime_ns:x}-{stat_result.st_size:x}-gz"',
                "last-modified": formatdate(stat_result.st_mtime, usegmt=True),
            }
            response: Response = _GzippedFile(self, str(full_path), stat_result, headers, media)
        else:
            response = FileResponse(
                full_path, status_code=status_code, stat_result=stat_result, media_type=media, headers=headers
            )
        if self.is_not_modified(response.headers, request_headers):
            return NotModifiedResponse(response.headers)
        return response

    def _cache_control(self, full_path: str | os.PathLike[str], scope: Scope) -> str:
        version = QueryParams(scope.get("query_string", b"")).get("v")
        if not version:
            return REVALIDATE
        try:
            relative = Path(full_path).relative_to(self._root).as_posix()
            current = fingerprint(relative) if self._fingerprinted else None
        except (ValueError, MissingAsset):
            current = None
        # Only the current content may be cached for good under its versioned URL: a stale link
        # (an old page still open during an upgrade) gets today's file, revalidated.
        return IMMUTABLE if version == current else REVALIDATE

    def cached_gzip(self, path: str, st: os.stat_result) -> bytes | None:
        entry = self._compressed.get(path)
        return entry.body if entry is not None and entry.key == (st.st_mtime_ns, st.st_size) else None

    def gzip_file(self, path: str, st: os.stat_result) -> bytes:
        """The file gzipped (level 9, once per file and change: the swagger-ui bundle takes about
        80 ms, so this runs in a worker thread, never on the event loop)."""
        with self._lock:
            if (body := self.cached_gzip(path, st)) is not None:
                return body
            # mtime=0: the same bytes for the same file, whichever process compressed it.
            body = gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0)
            self._compressed[path] = _Compressed((st.st_mtime_ns, st.st_size), body)
            return body


class _GzippedFile(Response):
    """A static file's gzipped bytes, compressed when the answer is sent (a 304 never is)."""

    def __init__(
        self, files: PortalStaticFiles, path: str, st: os.stat_result, headers: dict[str, str], media: str
    ) -> None:
        super().__init__(b"", headers=headers, media_type=media)
        self._files, self._path, self._stat = files, path, st

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._files.cached_gzip(self._path, self._stat)
        if body is None:
            body = await anyio.to_thread.run_sync(self._files.gzip_file, self._path, self._stat)
        self.body = body
        self.headers["content-length"] = str(len(body))
        await super().__call__(scope, receive, send)


def _accepts_gzip(headers: Headers) -> bool:
    for coding in headers.get("accept-encoding", "").split(","):
        name, _, params = coding.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def mount_static(app: FastAPI) -> None:
    """Serve vmportal/web/static at /static (named "static" for ``request.url_for``). Idempotent."""
    if any(getattr(route, "name", None) == "static" for route in app.router.routes):
        return
    app.mount(STATIC_PATH, PortalStaticFiles(), name="static")
