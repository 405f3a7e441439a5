"""The web pages' language: which one a request gets, and gettext in that language.

Chinese (zh_CN) first: it is what a request gets unless the person chose English (the language
switch sets a cookie; a user setting may be passed in) or the browser asks for English before any
Chinese. Messages are English in the code and templates (``_("Power on")``) and translated by the
Babel/gettext catalogs in vmportal/web/locale/; the zh_CN catalog is complete, the en catalog may
stay empty (a message's English is its msgid).

The active language lives in a context variable, set per request by :class:`LocaleMiddleware`, so
``gettext`` works the same in a route, a template and a service a page calls, without passing a
language around. Outside a request it is zh_CN (mail and tasks choose their own with
:func:`use_locale`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DEFAULT_LOCALE: Final = "zh_CN"
SUPPORTED_LOCALES: Final = ("zh_CN", "en")
# Each language's own name, shown in the language switch in that language (a person who cannot
# read the current page's language must still find theirs), so deliberately not translated.
AUTONYMS: Final = {"zh_CN": "中文", "en": "English"}
HTML_LANG: Final = {"zh_CN": "zh-CN", "en": "en"}
LOCALE_COOKIE: Final = "vmportal_lang"
LOCALE_DIR: Final = Path(__file__).parent / "locale"
DOMAIN: Final = "messages"

# Bounds on what a client can make the negotiation parse: a real browser sends a few tags.
_MAX_ACCEPT_LANGUAGE = 512
_MAX_TAGS = 16
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$|^\*$")


def normalize(tag: str | None) -> str | None:
    """The supported locale a language tag or locale id means, or None.

    Every Chinese tag (zh, zh-CN, zh-Hans, zh-TW, zh_cn, ...) means zh_CN: the portal has one
    Chinese, and a reader of traditional characters reads simplified far better than English.
    """
    if not tag:
        return None
    primary = re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()
    if primary == "zh":
        return "zh_CN"
    if primary == "en":
        return "en"
    return None


def parse_accept_language(header: str | None) -> list[str]:
    """The supported locales an Accept-Language header asks for, most preferred first (q-values
    honoured; ties keep the header's order; q=0 means 'not this one')."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header[:_MAX_ACCEPT_LANGUAGE].split(",")[:_MAX_TAGS]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not _TAG.match(tag):
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        locale = DEFAULT_LOCALE if tag == "*" else normalize(tag)
        if locale is not None and 0.0 < quality <= 1.0:
            weighted.append((-quality, position, locale))
    seen: list[str] = []
    for _q, _pos, locale in sorted(weighted):
        if locale not in seen:
            seen.append(locale)
    return seen


def negotiate(
    *, cookie: str | None = None, user_setting: str | None = None, accept_language: str | None = None
) -> str:
    """The language of a page: the choice made with the language switch on this browser (the
    cookie, the most recent explicit choice), then the user's saved setting, then the browser's
    Accept-Language, then zh_CN."""
    for explicit in (cookie, user_setting):
        if (locale := normalize(explicit)) is not None:
            return locale
    preferred = parse_accept_language(accept_language)
    return preferred[0] if preferred else DEFAULT_LOCALE


@cache
def translations(locale: str) -> Translations:
    """The compiled catalog of a supported locale (loaded once per process).

    The .mo file compiled at install time is used when it is newer than its .po; otherwise (a
    fresh checkout, an edited .po) the .po is compiled in memory, so a page never shows stale or
    missing translations because a compile step was skipped.
    """
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(f"unsupported locale {locale!r}; supported: {', '.join(SUPPORTED_LOCALES)}")
    folder = LOCALE_DIR / locale / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as fp:
            return Translations(fp, domain=DOMAIN)
    log.warning("%s is missing or older than its .po; compiled in memory (run scripts/catalogs.sh)", mo)
    with po.open("rb") as fp:
        catalog = read_po(fp, locale=locale, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


_active: ContextVar[str] = ContextVar("vmportal_locale", default=DEFAULT_LOCALE)


def current_locale() -> str:
    return _active.get()


def activate(locale: str) -> Token[str]:
    """Make ``locale`` the active language of the current context; reset with the returned token."""
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(f"unsupported locale {locale!r}")
    return _active.set(locale)


@contextmanager
def use_locale(locale: str) -> Iterator[None]:
    """Run a block in one language (a mail to a user, a task, a test)."""
    token = activate(locale)
    try:
        yield
    finally:
        _active.reset(token)


def gettext(message: str) -> str:
    return translations(_active.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_active.get()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """A message whose translation depends on where it is used (``pgettext("power state", "Suspended")``
    is 已挂起, while a VM's security state 'suspended' is 已暂停)."""
    # Babel's NullTranslations types this loosely; gettext.GNUTranslations returns str.
    return str(translations(_active.get()).pgettext(context, message))


def npgettext(context: str, singular: str, plural: str, n: int) -> str:
    return translations(_active.get()).npgettext(context, singular, plural, n)


def N_(message: str) -> str:
    """Mark a string for extraction without translating it now (a module-level constant that is
    translated where it is shown, with gettext)."""
    return message


_ = gettext


class LocaleMiddleware:
    """Negotiate each page request's language (cookie, then Accept-Language) and make it active
    for everything the request runs, including routes run in a worker thread (they copy the
    context). The locale is also put in ``request.state.locale``; HTML answers say which language
    they are in and that they vary with these headers, so a shared cache never serves a Chinese
    page to an English reader.

    Paths under ``skip_prefixes`` (the JSON API, which answers in both languages at once) pass
    through untouched. Plain ASGI, as the portal's other middleware, to cost nothing per request
    beyond the negotiation itself.
    """

    def __init__(self, app: ASGIApp, *, skip_prefixes: tuple[str, ...] = ("/api/",)) -> None:
        self.app = app
        self.skip_prefixes = skip_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.skip_prefixes):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        locale = negotiate(
            cookie=_cookie(headers.get("cookie"), LOCALE_COOKIE),
            accept_language=headers.get("accept-language"),
        )
        scope.setdefault("state", {})["locale"] = locale

        async def send_with_language(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = Headers(raw=message["headers"])
                if response_headers.get("content-type", "").startswith("text/html"):
                    raw = list(message["headers"])
                    if "content-language" not in response_headers:
                        raw.append((b"content-language", HTML_LANG[locale].encode()))
                    raw.append((b"vary", b"Accept-Language, Cookie"))
                    message = {**message, "headers": raw}
            await send(message)

        token = _active.set(locale)
        try:
            await self.app(scope, receive, send_with_language)
        finally:
            _active.reset(token)


def _cookie(header: str | None, name: str) -> str | None:
    """One cookie's value from a Cookie header (without parsing the others)."""
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip().strip('"')
    return None
