"""HTML (Jinja2) to PDF (WeasyPrint), and what every generated document carries.

A document cannot contain its own SHA-256, so the footer prints a document id and the time it was
generated, and :class:`RenderedDocument` returns the hash of the bytes beside them. A signed scan
uploaded later shows the id in its footer; the caller that kept (id, hash) links the scan to the
original. Rendering is deterministic: the same inputs, id and time give the same bytes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import jinja2

from vmportal.kit.clock import BEIJING

if TYPE_CHECKING:
    from weasyprint import CSS

TEMPLATES = Path(__file__).parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,  # a unit's name is data, never markup
    undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty blank on a legal paper
    trim_blocks=True,
    lstrip_blocks=True,
)


@cache
def _print_css() -> CSS:
    # WeasyPrint loads Pango when imported: importing it here, on first use, keeps the spreadsheet
    # half of this package usable on a machine without Pango.
    from weasyprint import CSS

    return CSS(filename=str(TEMPLATES / "print.css"))


@dataclass(frozen=True)
class RenderedDocument:
    pdf: bytes
    sha256: str  # of ``pdf``; keep it with ``document_id`` to recognise the signed scan
    document_id: str
    generated_at: datetime  # aware, Beijing time
    kind: str  # "commitment_letter", "vm_agreement", "summary"
    pages: int
    filename: str  # a suggestion for Content-Disposition (contains Chinese: encode per RFC 6266)


def chinese_date(day: date) -> str:
    """``2026年12月1日``: the way a Chinese signature line writes a date (no leading zeros)."""
    return f"{day.year}年{day.month}月{day.day}日"


def new_document_id(prefix: str, unit_code: str, when: datetime) -> str:
    """``VA-cs-20261201-3F9A2C1D``: kind, unit, day, and 32 random bits, short enough to type in."""
    return f"{prefix}-{unit_code}-{when.astimezone(BEIJING):%Y%m%d}-{secrets.token_hex(4).upper()}"


def beijing_now() -> datetime:
    # Whole seconds: the footer prints seconds, and the time must reproduce the same bytes.
    return datetime.now(BEIJING).replace(microsecond=0)


def _no_fetching(url: str, *args: Any, **kwargs: Any) -> NoReturn:
    # Everything a form needs is in the template and the stylesheet. Refusing every URL means a
    # value that slipped past escaping still cannot make the renderer read a file or the network.
    raise ValueError(f"the paperwork renderer fetches nothing (asked for {url[:80]!r})")


def render_pdf(
    template: str,
    context: dict[str, Any],
    *,
    kind: str,
    document_id: str,
    generated_at: datetime,
    title: str,
    filename: str,
    extra_css: str = "",
) -> RenderedDocument:
    """Render ``templates/<template>`` with ``context`` into an A4 PDF with the standard footer."""
    html = _env.get_template(template).render(
        **context,
        title=title,
        document_id=document_id,
        generated_at=generated_at.astimezone(BEIJING),
    )
    from weasyprint import CSS, HTML

    stylesheets = [_print_css()] + ([CSS(string=extra_css)] if extra_css else [])
    document = HTML(string=html, url_fetcher=_no_fetching).render(stylesheets=stylesheets)
    pdf = document.write_pdf()
    assert pdf is not None  # write_pdf returns bytes when no target is given
    return RenderedDocument(
        pdf=pdf,
        sha256=hashlib.sha256(pdf).hexdigest(),
        document_id=document_id,
        generated_at=generated_at.astimezone(BEIJING),
        kind=kind,
        pages=len(document.pages),
        filename=filename,
    )
