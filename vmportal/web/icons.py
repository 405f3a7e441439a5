"""The portal's icons: one SVG sprite of the few Lucide icons the pages use, and the markup that
shows one of them.

The sprite is built at install time (scripts/vendor-assets.sh runs ``python -m vmportal.web.icons``)
from the npm package lucide-static, so pages load one small cached file instead of an icon font or
a CDN, and only the icons named here are shipped.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from pathlib import Path
from xml.etree import ElementTree as ET

from defusedxml import ElementTree as SafeET
from markupsafe import Markup, escape

SVG_NS = "http://www.w3.org/2000/svg"

# The portal's name for an icon -> the Lucide icon drawn for it. Pages use the portal's names, so
# a different drawing can be chosen here without touching a template.
ICONS: Mapping[str, str] = {
    "vm": "monitor",
    "server": "server",
    "power": "power",
    "stop": "square",
    "restart": "rotate-cw",
    "shield": "shield-check",
    "shield-alert": "shield-alert",
    "lock": "lock",
    "check": "check",
    "x": "x",
    "user": "user",
    "logout": "log-out",
    "language": "languages",
    "menu": "menu",
    "search": "search",
    "sort": "arrow-up-down",
    "sort-asc": "arrow-up",
    "sort-desc": "arrow-down",
    "prev": "chevron-left",
    "next": "chevron-right",
    "download": "download",
    "upload": "upload",
    "copy": "copy",
    "clock": "clock",
    "warning": "triangle-alert",
    "info": "info",
    "success": "circle-check",
    "error": "circle-x",
}

SPRITE_PATH = "vendor/icons/icons.svg"  # under the static folder

# The root <svg> attributes that style the drawing; carried over to each <symbol>, from which the
# instance a <use> creates inherits them.
_PRESENTATION = ("viewBox", "fill", "stroke", "stroke-width", "stroke-linecap", "stroke-linejoin")


def build_sprite(icon_dir: Path, icons: Mapping[str, str] = ICONS) -> str:
    """The sprite document: one ``<symbol id="NAME">`` per portal icon name."""
    ET.register_namespace("", SVG_NS)
    sprite = ET.Element(f"{{{SVG_NS}}}svg")
    for name, source in sorted(icons.items()):
        path = icon_dir / f"{source}.svg"
        if not path.is_file():
            raise FileNotFoundError(f"icon {name!r}: {path} is not in the lucide-static package")
        drawing = SafeET.fromstring(path.read_bytes())
        symbol = ET.SubElement(sprite, f"{{{SVG_NS}}}symbol", id=name)
        for attribute in _PRESENTATION:
            if (value := drawing.get(attribute)) is not None:
                symbol.set(attribute, value)
        symbol.extend(list(drawing))
    for element in sprite.iter():
        # No whitespace text: the file is served on every page's first visit.
        element.text = element.text.strip() if element.text else None
        element.tail = None
    body = ET.tostring(sprite, encoding="unicode")
    return "<!-- Lucide icons (ISC licence, see LICENSE beside this file) -->\n" + body + "\n"


@functools.lru_cache(maxsize=1024)  # a list page asks for the same few icons hundreds of times
def icon_markup(name: str, sprite_url: str, *, label: str | None = None, css_class: str = "") -> Markup:
    """An inline ``<svg>`` showing one sprite icon. Decorative (hidden from screen readers) unless a
    label is given, in which case it is announced as an image with that label."""
    if name not in ICONS:
        raise KeyError(f"unknown icon {name!r}; the sprite has: {', '.join(sorted(ICONS))}")
    classes = f"icon {css_class}".strip()
    if label:
        a11y = Markup(' role="img" aria-label="{}"').format(label)
    else:
        a11y = Markup(' aria-hidden="true" focusable="false"')
    return Markup('<svg class="{}"{}><use href="{}#{}"></use></svg>').format(
        classes, a11y, sprite_url, escape(name)
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m vmportal.web.icons LUCIDE_ICON_DIR OUTPUT.svg", file=sys.stderr)
        return 2
    icon_dir, output = Path(argv[0]), Path(argv[1])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(build_sprite(icon_dir), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
