"""Charts as server-side SVG (pure functions: numbers in, markup out).

Drawn on the server, they need no script, no chart library and no network, so
they show the same with JavaScript off and print as they look.  Every label is
escaped; colours come from the stylesheet (classes, ``currentColor``), so the
light and dark themes apply without redrawing.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

LABEL_CHARS = 28


def compact(value: float) -> str:
    """``1234`` -> ``1.2k``, ``2500000`` -> ``2.5M`` (axis and bar labels)."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


def _nice_max(value: float) -> float:
    """The axis top: ``value`` rounded up to 1, 2, 2.5 or 5 x 10^n."""
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * step:
            return factor * step
    return value


def hbars(rows: Sequence[tuple[str, float]], *, title: str, unit: str = "",
          width: int = 760) -> Markup:
    """One horizontal bar per ``(label, value)``, longest first as given."""
    row_h, label_w, value_w, pad = 26, 240, 70, 8
    height = max(len(rows), 1) * row_h + 2 * pad
    top = max((v for _, v in rows), default=0.0) or 1.0
    bar_w = width - label_w - value_w - 2 * pad
    parts = [f'<svg class="chart hbars" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    if not rows:
        parts.append(f'<text class="empty" x="{width / 2}" y="{height / 2 + 4}" '
                     'text-anchor="middle">no requests in this range</text>')
    for i, (label, value) in enumerate(rows):
        y = pad + i * row_h
        w = max(bar_w * value / top, 1.0 if value else 0.0)
        tip = f"{label}: {value:,.0f} {unit}".rstrip()
        parts.append(
            f'<g class="row"><title>{escape(tip)}</title>'
            f'<text class="label" x="{pad + label_w - 8}" y="{y + 17}" '
            f'text-anchor="end">{escape(_short(label))}</text>'
            f'<rect class="bar" x="{pad + label_w}" y="{y + 4}" width="{w:.1f}" '
            f'height="{row_h - 8}" rx="3"/>'
            f'<text class="value" x="{pad + label_w + w + 6:.1f}" y="{y + 17}">'
            f"{escape(compact(value))}</text></g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(points: Sequence[tuple[str, float]], *, title: str, unit: str = "",
            width: int = 1180, height: int = 240) -> Markup:
    """One vertical bar per ``(label, value)`` in order (e.g. days), with a
    y axis (0, half, top) and about eight x labels."""
    left, right, top_pad, bottom = 48, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = _nice_max(max((v for _, v in points), default=0.0))
    parts = [f'<svg class="chart columns" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for frac in (0.0, 0.5, 1.0):
        y = top_pad + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/><text class="axis" x="{left - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{escape(compact(top * frac))}</text>')
    n = max(len(points), 1)
    slot = plot_w / n
    every = max(1, round(n / 8))
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = left + i * slot
        tip = f"{label}: {value:,.0f} {unit}".rstrip()
        parts.append(f'<g class="col"><title>{escape(tip)}</title>'
                     f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{top_pad + plot_h - h:.1f}" '
                     f'width="{max(slot * 0.7, 1):.1f}" height="{h:.1f}" rx="2"/></g>')
        if i % every == 0:
            parts.append(f'<text class="axis" x="{x + slot / 2:.1f}" y="{height - 8}" '
                         f'text-anchor="middle">{escape(label)}</text>')
    if not points:
        parts.append(f'<text class="empty" x="{width / 2}" y="{height / 2}" '
                     'text-anchor="middle">no requests in this range</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
