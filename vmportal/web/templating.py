"""The Jinja2 environment every page renders with: autoescaping on, gettext installed (the
``i18n`` extension, new-style: ``{{ _("%(n)d VMs", n=3) }}`` escapes its arguments), the formats of
vmportal.web.formats as filters, and the helpers base.html and _macros.html use.

Undefined variables raise instead of printing nothing (StrictUndefined): a page that forgot to
pass something fails its test instead of showing a blank where a VM's state should be. Optional
context is tested with ``is defined``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from vmportal import __version__
from vmportal.web import formats, i18n, icons, language, static

TEMPLATE_DIR: Final = Path(__file__).parent / "templates"


def _root_path(context: Context) -> str:
    request = context.get("request")
    if request is None:
        return ""
    return str(request.scope.get("root_path", "")).rstrip("/")


@pass_context
def _site_url(context: Context, path: str) -> str:
    """A path of the portal, behind the proxy prefix if there is one."""
    return _root_path(context) + path


_ids = itertools.count(1)


def unique_id(prefix: str) -> str:
    """An element id no other element of the page has (a tooltip's, for aria-describedby)."""
    return f"{prefix}-{next(_ids)}"


@pass_context
def _static_url(context: Context, relative: str) -> str:
    return static.static_url(relative, root_path=_root_path(context))


@pass_context
def _icon(context: Context, name: str, label: str | None = None, css_class: str = "") -> Markup:
    sprite = static.static_url(icons.SPRITE_PATH, root_path=_root_path(context))
    return icons.icon_markup(name, sprite, label=label, css_class=css_class)


@pass_context
def _language_choices(context: Context) -> list[dict[str, Any]]:
    """The language switch's links, each back to the current page."""
    request = context.get("request")
    here = "/"
    if request is not None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    current = i18n.current_locale()
    return [
        {
            "code": code,
            "name": i18n.AUTONYMS[code],
            "lang": i18n.HTML_LANG[code],
            "url": language.language_url(code, here, root_path=_root_path(context)),
            "current": code == current,
        }
        for code in i18n.SUPPORTED_LOCALES
    ]


def query_url(query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, **changes: Any) -> str:
    """``?…`` for the current query with some parameters changed (None removes one): the links of
    sortable columns and of the pager keep the page's filters."""
    items: list[tuple[str, Any]]
    if query is None:
        items = []
    elif isinstance(query, Mapping):
        multi = getattr(query, "multi_items", None)
        items = list(multi()) if callable(multi) else list(query.items())
    else:
        items = list(query)
    kept = [(k, v) for k, v in items if k not in changes and v is not None]
    kept += [(k, v) for k, v in changes.items() if v is not None]
    return "?" + urlencode(kept) if kept else "?"


def make_environment(*template_dirs: Path) -> jinja2.Environment:
    """A new environment loading ``template_dirs`` first, then vmportal/web/templates (so pages
    extend "base.html" and import "_macros.html" from wherever they live)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*template_dirs, TEMPLATE_DIR]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        # The templates ship inside the package and change only with a new release (a restart):
        # checking each one's mtime on every include cost a stat per row of a VM list.
        auto_reload=False,
        lstrip_blocks=True,
    )
    # Added to the environment by the i18n extension, so unknown to the type checker.
    install: Any = getattr(env, "install_gettext_callables")  # noqa: B009
    install(i18n.gettext, i18n.ngettext, newstyle=True, pgettext=i18n.pgettext, npgettext=i18n.npgettext)
    env.filters.update(
        local_time=formats.local_time,
        local_date=formats.local_date,
        time_tag=formats.time_tag,
        time_left=formats.time_left,
        time_ago=formats.time_ago,
        span=formats.span,
        number=formats.number,
        data_size=formats.data_size,
        gib=formats.gib,
    )
    env.globals.update(
        static_url=_static_url,
        site_url=_site_url,
        unique_id=unique_id,
        icon=_icon,
        language_choices=_language_choices,
        current_locale=i18n.current_locale,
        html_lang=lambda: i18n.HTML_LANG[i18n.current_locale()],
        query_url=query_url,
        portal_version=__version__,
    )
    return env


def templates(*template_dirs: Path) -> Jinja2Templates:
    """FastAPI's template renderer over :func:`make_environment` (``templates().TemplateResponse(
    request, "vms/list.html", {...})`` puts ``request`` in the context for base.html)."""
    return Jinja2Templates(env=make_environment(*template_dirs))
