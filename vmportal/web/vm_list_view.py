"""The VM list's page (/vms) and its table (the HTMX refresh, a pressed row), rendered light.

Two callers render through this module, so their answers cannot drift: the router's page
(vmportal/web/vm_pages.py, the ORM's rows, every database) and the page lane
(vmportal/web/vm_lane.py, the SQL reader's rows, PostgreSQL), which answers the same request
without the router. Both give the same bytes for the same user and query (tests/web/test_vm_lane.py).

Why not the Jinja templates as they were: a row was a macro call, 50 of them about 5 ms of a
page (docs/decisions.md, "A list row is a macro imported once per table"). Here a row is one
format string; what is the same for every row of a language (the badges, "Actions", "View only",
the icon) is rendered once per language and proxy prefix, and the badges are still the macros of
_macros.html (rendered once, not restated). The layout around the table (base.html, the search
form of vms.html) is rendered by Jinja once per language, role, kind of account and prefix with
placeholders where the user's values go (the CSRF token, the display name, the search text, the
sort, the page's own address in the language switch); a request joins the pieces with its values
escaped as Jinja escapes them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from vmportal.web import common, icons, static, templating
from vmportal.web.i18n import current_locale, gettext, ngettext

TEMPLATE_DIR = Path(__file__).parent / "templates" / "unit"
PAGE_SIZE = 50

_POWER_STATES = ("running", "stopped", "suspended")
_SECURITY_STATES = ("normal", "suspended", "rectification_submitted", "restored")
_UNKNOWN = "\x00unknown"  # no state is this: the macros' "Unknown" badge


def _safe(text: str) -> Markup:
    """A translation as Jinja's gettext gives it to a template (marked safe, not escaped: the
    catalogs are the portal's own), so these pieces equal the templates' ``{{ _("…") }}``."""
    return Markup(text)  # noqa: S704


@dataclass(frozen=True, slots=True)
class Row:
    """A VM of the list as its row shows it; ``barred`` is the rule power_ops's reason, or ""."""

    id: int
    name: str
    unit_name: str
    ip_address: str
    power_state: str
    security_state: str
    barred: str


@dataclass(frozen=True, slots=True)
class Table:
    rows: Sequence[Row]
    total: int
    page: int
    q: str
    sort: str
    query: list[tuple[str, str]]  # the request's query, as request.query_params.multi_items()

    @property
    def pages(self) -> int:
        return max((self.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)


def state_text(value: Any) -> str:
    """A stored state as the page writes it (an enum member's value, a plain string as it is)."""
    return str(getattr(value, "value", value))


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    return templating.make_environment(TEMPLATE_DIR)


class _Strings:
    """What every row of one language and proxy prefix shares, rendered once."""

    def __init__(self, root_path: str, sprite: str) -> None:
        macros = (
            _environment()
            .get_template("_macros.html")
            .make_module({"request": SimpleNamespace(scope={"root_path": root_path})})
        )
        self.power = {s: macros.power_badge(s) for s in (*_POWER_STATES, _UNKNOWN)}
        self.security = {s: macros.security_badge(s) for s in (*_SECURITY_STATES, _UNKNOWN)}
        self.icon_power = icons.icon_markup("power", sprite)
        self.icon_info = icons.icon_markup("info", sprite)
        self.icon_prev = icons.icon_markup("prev", sprite)
        self.icon_next = icons.icon_markup("next", sprite)
        self.actions = _safe(gettext("Actions"))
        self.view_only = _safe(gettext("View only"))
        self.vm_named = _safe(gettext("(VM %(name)s)"))
        self.vms_count = _safe(gettext("%(n)d VMs"))
        self.columns = [
            ("name", _safe(gettext("Name"))),
            ("unit", _safe(gettext("Unit"))),
            ("ip_address", _safe(gettext("IP address"))),
            ("power", _safe(gettext("Power state"))),
            ("security", _safe(gettext("Security state"))),
            ("actions", _safe(gettext("Actions"))),
        ]
        self.empty = _safe(gettext("No VM yet."))
        self.pages_label = _safe(gettext("Pages"))
        self.page_of = _safe(gettext("page %(page)d of %(pages)d"))
        self.page_n = _safe(gettext("page %(page)d"))
        self.previous = _safe(gettext("Previous"))
        self.next = _safe(gettext("Next"))
        # The rows' pieces as plain strings (see esc).
        self.site_text = str(escape(root_path))
        self.power_text = {k: str(v) for k, v in self.power.items()}
        self.security_text = {k: str(v) for k, v in self.security.items()}
        self.vm_named_text = str(self.vm_named)
        self.view_only_html = f'    <span class="muted">{self.view_only}</span>\n'
        self.actions_html = f"{self.icon_power}<span>{self.actions}</span>"


@functools.lru_cache(maxsize=64)
def _strings_of(locale: str, root_path: str, sprite: str) -> _Strings:
    del locale  # part of the cache key: gettext answers in the active language
    return _Strings(root_path, sprite)


def _strings(root_path: str) -> _Strings:
    sprite = static.static_url(icons.SPRITE_PATH, root_path=root_path)
    return _strings_of(current_locale(), root_path, sprite)


def esc(text: str) -> str:
    """``text`` escaped exactly as markupsafe (Jinja's autoescape) escapes it, as a plain str: the
    rows are joined as plain strings, which costs a fraction of formatting Markup objects."""
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = text.replace('"', "&#34;").replace("'", "&#39;")
    return text


def row_html(row: Row, strings: _Strings, message: tuple[str, str] | None = None) -> str:
    """One VM's row: its columns and its "Actions" control (or "View only"), with the outcome of a
    press when ``message`` is given."""
    s = strings
    site, vm = s.site_text, row.id
    said = ""
    if message:
        role = "alert" if message[0] == "error" else "status"
        said = (
            f'    <p class="row-message row-message-{esc(message[0])}" role="{role}">{esc(message[1])}</p>\n'
        )
    if row.barred:
        actions = s.view_only_html
    else:
        named = s.vm_named_text % {"name": esc(row.name)}
        actions = (
            f'    <a class="btn btn-quiet menu-toggle" href="{site}/vms/{vm}" data-menu-toggle\n'
            f'       hx-get="{site}/vms/{vm}/actions" hx-target="#vm-menu-{vm}" hx-swap="innerHTML"\n'
            f'       aria-controls="vm-menu-{vm}">{s.actions_html}<span class="sr-only"> {named}</span></a>\n'
            f'    <div class="row-menu" id="vm-menu-{vm}"></div>\n'
        )
    power = s.power_text.get(row.power_state) or s.power_text[_UNKNOWN]
    security = s.security_text.get(row.security_state) or s.security_text[_UNKNOWN]
    return (
        f'<tr data-vm="{vm}">\n'
        f'  <td><a href="{site}/vms/{vm}">{esc(row.name)}</a></td>\n'
        f"  <td>{esc(row.unit_name)}</td>\n"
        f"  <td>{esc(row.ip_address)}</td>\n"
        f'  <td class="power-state" data-state="{esc(row.power_state)}">{power}</td>\n'
        f'  <td class="security-state" data-state="{esc(row.security_state)}">{security}</td>\n'
        f"  <td>\n{said}{actions}  </td>\n"
        "</tr>"
    )


def _url(query: Iterable[tuple[str, Any]], **changes: Any) -> str:
    """The escaped ``?…`` of the query with some parameters changed (templating.query_url, as the
    templates call it): cached, since a page asks the same few links again and again."""
    items = tuple(query)
    if sum(len(k) + len(str(v)) for k, v in items) > 200:  # a long query is not kept (memory)
        return str(escape(templating.query_url(list(items), **changes)))
    return _cached_url(items, tuple(changes.items()))


@functools.lru_cache(maxsize=4096)
def _cached_url(query: tuple[tuple[str, Any], ...], changes: tuple[tuple[str, Any], ...]) -> str:
    return str(escape(templating.query_url(list(query), **dict(changes))))


def _pager(table: Table, s: _Strings) -> str:
    """As _macros.html's pager (the same markup), for the VM list."""
    page, pages, query = table.page, table.pages, table.query
    items = _safe(ngettext("%(num)d item", "%(num)d items", table.total)) % {"num": table.total}
    out = [
        f'<nav class="pager" aria-label="{s.pages_label}">\n'
        f'  <p class="pager-summary">{items} · {s.page_of % {"page": page, "pages": max(pages, 1)}}</p>\n'
    ]
    if pages > 1:
        out.append("  <ul>\n")
        if page > 1:
            out.append(
                f'    <li><a href="{_url(query, page=page - 1)}" rel="prev">{s.icon_prev}'
                f"<span>{s.previous}</span></a></li>\n"
            )
        else:
            out.append(
                f'    <li><span class="pager-off">{s.icon_prev}<span>{s.previous}</span></span></li>\n'
            )
        for p in range(max(1, page - 2), min(pages, page + 2) + 1):
            if p == page:
                out.append(f'    <li><span class="pager-current" aria-current="page">{p}</span></li>\n')
            else:
                label = s.page_n % {"page": p}
                out.append(f'    <li><a href="{_url(query, page=p)}" aria-label="{label}">{p}</a></li>\n')
        if page < pages:
            out.append(
                f'    <li><a href="{_url(query, page=page + 1)}" rel="next"><span>{s.next}</span>'
                f"{s.icon_next}</a></li>\n"
            )
        else:
            out.append(f'    <li><span class="pager-off"><span>{s.next}</span>{s.icon_next}</span></li>\n')
        out.append("  </ul>\n")
    out.append("</nav>")
    return "".join(out)


def table_html(table: Table, root_path: str) -> str:
    """The table part (#vm-table): what the page includes and the 5 s refresh swaps."""
    s = _strings(root_path)
    barred = next((r.barred for r in table.rows if r.barred), "")
    count = s.vms_count % {"n": table.total}
    out = [
        f'<div id="vm-table" hx-get="{s.site_text}/vms{_url(table.query)}" hx-trigger="every 5s"'
        ' hx-swap="outerHTML">\n'
    ]
    if barred:
        out.append(
            f'<p class="flash flash-info" role="note">{s.icon_info}<span>{escape(barred)}</span></p>\n'
        )
    out.append(f'<div class="table-scroll" role="region" aria-label="{count}" tabindex="0">\n')
    out.append(f'<table class="data">\n  <caption>{count}</caption>\n  <thead><tr>\n')
    sort = table.sort
    for key, label in s.columns:
        if key in ("name", "ip_address"):
            active = sort in (key, "-" + key)
            order = ("descending" if sort.startswith("-") else "ascending") if active else "none"
            link = _url(table.query, sort=("-" + key if sort == key else key), page=None)
            out.append(
                f'    <th scope="col" aria-sort="{order}">\n'
                f'      <a class="sort-link" href="{link}">{label}</a></th>\n'
            )
        else:
            out.append(f'    <th scope="col">{label}</th>\n')
    out.append("  </tr></thead>\n  <tbody>\n")
    if table.rows:
        out.append("\n".join(row_html(r, s) for r in table.rows))
        out.append("\n")
    else:
        out.append(f'    <tr><td colspan="6" class="empty">{s.empty}</td></tr>\n')
    out.append("  </tbody>\n</table>\n</div>\n")
    out.append(_pager(table, s))
    out.append("\n</div>\n")
    return "".join(out)


def one_row_html(row: Row, root_path: str, message: tuple[str, str] | None) -> str:
    """One row alone: the answer to a press in its opened actions (POST /vms/{id}/power, from=list)."""
    return row_html(row, _strings(root_path), message)


# The layout's placeholders: plain letters, which escaping, URL quoting and |tojson all leave as
# they are, so each appears in the rendered layout exactly as written.
_SLOTS = {
    "csrf": "vmportalSlotCsrf0a1b",
    "display_name": "vmportalSlotName0a1b",
    "username": "vmportalSlotUser0a1b",
    "q": "vmportalSlotQuery0a1b",
    "sort": "vmportalSlotSort0a1b",
    "here": "vmportalSlotHere0a1b",
    "table": "vmportalSlotTable0a1b",
}
_SLOT_OF = {v: k for k, v in _SLOTS.items()}
_SLOT_RE = re.compile("|".join(_SLOTS.values()))


def _title(has_unit: bool) -> str:
    return gettext("My VMs") if has_unit else gettext("VMs")


#: The static files base.html links (their fingerprints are part of the layout's cache key, so an
#: asset changed under a running portal is linked afresh, as Jinja's own rendering would).
_LAYOUT_ASSETS = ("favicon.svg", "portal.css", "vendor/htmx/htmx.min.js", "portal.js", icons.SPRITE_PATH)


def _assets() -> tuple[str, ...]:
    return tuple(static.fingerprint(name) for name in _LAYOUT_ASSETS)


@functools.lru_cache(maxsize=256)
def _layout(
    locale: str, root_path: str, role: str, has_unit: bool, assets: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """vms.html rendered with the placeholders: its literal pieces and, between them, the slots."""
    del locale, assets  # part of the cache key: the language the layout is in, its assets' versions
    request = SimpleNamespace(
        scope={"root_path": root_path}, url=SimpleNamespace(path=_SLOTS["here"], query="")
    )
    context = {
        "request": request,
        "page_title": _title(has_unit),
        "user": {"display_name": _SLOTS["display_name"], "username": _SLOTS["username"], "role_label": role},
        "csrf_token": _SLOTS["csrf"],
        "nav": common.nav_items(role, "/vms"),
        "q": _SLOTS["q"],
        "sort": _SLOTS["sort"],
        "table": _safe(_SLOTS["table"]),
    }
    text = _environment().get_template("vms.html").render(context)
    pieces: list[str] = []
    slots: list[str] = []
    start = 0
    for found in _SLOT_RE.finditer(text):
        pieces.append(text[start : found.start()])
        slots.append(_SLOT_OF[found.group(0)])
        start = found.end()
    pieces.append(text[start:])
    return tuple(pieces), tuple(slots)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user as the layout shows them, and their session's CSRF token."""

    username: str
    display_name: str
    role: str
    has_unit: bool
    csrf: str


def page_html(table: Table, viewer: Viewer, root_path: str, here: str) -> str:
    """The whole page: the layout around the search form and the table. ``here`` is the page's
    address as the language switch links back to it (path and query, as the browser sent them)."""
    pieces, slots = _layout(current_locale(), root_path, viewer.role, viewer.has_unit, _assets())
    values = {
        "csrf": str(escape(viewer.csrf)),
        "display_name": str(escape(viewer.display_name or viewer.username)),
        "username": str(escape(viewer.username)),
        "q": str(escape(table.q)),
        "sort": str(escape(table.sort)),
        "here": str(escape(quote(here, safe="/"))),
        "table": table_html(table, root_path),
    }
    out = [pieces[0]]
    for slot, piece in zip(slots, pieces[1:], strict=True):
        out.append(values[slot])
        out.append(piece)
    return "".join(out)


def here_of(path: str, query: str) -> str:
    """The page's address for the language switch, as base.html's helper builds it."""
    return path + (f"?{query}" if query else "")
