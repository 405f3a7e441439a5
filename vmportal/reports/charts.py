"""Small bar charts drawn as SVG on the server, for the committee's one-page PDF.

WeasyPrint renders inline SVG but runs no JavaScript, so the page's ECharts cannot draw on paper;
these are plain rectangles and text with the figures written on the bars, so a reader of a
black-and-white print still reads the numbers. Every text is escaped: a unit's name is data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

#: Distinct on paper and in grey: blue, orange, green, purple, red, grey.
PALETTE = ("#2f6db5", "#e08a1e", "#3a9a5b", "#7b5ea7", "#c8463d", "#8c8c8c")
FONT = "Noto Sans CJK SC, sans-serif"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def _nice_step(value: float) -> float:
    """The grid step for four steps up to at least ``value``: 1, 2 or 5 times a power of ten, at
    least 1 (the figures are counts, days or hours: no grid line at 0.25 of an incident)."""
    want, step = max(value / 4, 1.0), 1.0
    while True:
        for factor in (1, 2, 5):
            if step * factor >= want:
                return step * factor
        step *= 10


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _rect(x: float, y: float, w: float, h: float, fill: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}"/>'


def _text(x: float, y: float, size: float, text: str, anchor: str = "start", extra: str = "") -> str:
    """A text element; ``text`` is escaped here, the one place text enters the markup."""
    where = f'x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"'
    return f"<text {where}{extra}>{escape(text)}</text>"


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out, cursor = [], x
    for i, s in enumerate(series):
        out.append(_rect(cursor, y - 7, 8, 8, PALETTE[i % 6]))
        out.append(_text(cursor + 11, y, 9, s.name))
        cursor += 22 + 9 * len(s.name)
    return out


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    # Safe: every text went through _text (escaped), every number is formatted by this module.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" '
        f'font-family="{FONT}">' + "".join(body) + "</svg>"
    )


def columns(
    title: str, labels: Sequence[str], series: Sequence[Series], *, width: int = 600, height: int = 150
) -> Markup:
    """Vertical bars per label, the series stacked, each stack's total written above it."""
    top, bottom, left, right = 30, 22, 30, 8
    plot_h, plot_w = height - top - bottom, width - left - right
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    peak = 4 * _nice_step(max(totals, default=0))
    body = [_text(0, 11, 11, title, extra=' font-weight="bold"')]
    body += _legend(series, width * 0.45, 11)
    for k in range(5):  # four grid steps
        value = peak * k / 4
        y = top + plot_h - plot_h * k / 4
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(_text(left - 3, y + 3, 8, _number(value), "end"))
    slot = plot_w / max(len(labels), 1)
    bar = slot * 0.62
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar) / 2
        y = top + plot_h
        for j, s in enumerate(series):
            h = plot_h * s.values[i] / peak
            if h > 0:
                body.append(_rect(x, y - h, bar, h, PALETTE[j % 6]))
            y -= h
        if totals[i]:
            body.append(_text(x + bar / 2, y - 2, 8, _number(totals[i]), "middle"))
        body.append(_text(x + bar / 2, height - 9, 8, label, "middle"))
    return _svg(width, height, body, title)


def rows(
    title: str, labels: Sequence[str], series: Sequence[Series], *, width: int = 290, height: int = 140
) -> Markup:
    """Horizontal bars, one per label (at most as many as fit), the series stacked, totals at the end."""
    top, label_w, right = 30, 96, 26
    room = height - top - 4
    shown = labels[: max(1, int(room // 14))]
    band, bar = 14.0, 10.0  # from the top down: one bar is not left floating in the middle
    totals = [sum(s.values[i] for s in series) for i in range(len(shown))]
    peak = 4 * _nice_step(max(totals, default=0))
    plot_w = width - label_w - right
    body = [_text(0, 11, 11, title, extra=' font-weight="bold"')]
    if len(series) > 1:
        body += _legend(series, 0, 24)
    for i, label in enumerate(shown):
        y = top + band * i + (band - bar) / 2
        name = label if len(label) <= 9 else label[:8] + "…"
        body.append(_text(label_w - 4, y + bar - 1.5, 8.5, name, "end"))
        x = float(label_w)
        for j, s in enumerate(series):
            w = plot_w * s.values[i] / peak
            if w > 0:
                body.append(_rect(x, y, w, bar, PALETTE[j % 6]))
            x += w
        body.append(_text(x + 3, y + bar - 1.5, 8, _number(totals[i])))
    if not shown or not any(totals):
        body.append(_text(label_w, top + 14, 9, "（无）", extra=' fill="#555"'))
    return _svg(width, height, body, title)
