"""Small inline-SVG plots (histogram, bars, scatter, lines) drawn with numpy and string formatting only.

Each plot is one ``<svg class="plot plot-KIND" data-...>`` element with a <title>, axes with a few ticks and
labelled data marks, so a page needs no script and a test can read what is drawn from the DOM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

WIDTH, HEIGHT = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 30, 46
COLORS = ("#3b6ea8", "#d9822b", "#4c9f70", "#b04a5a", "#7a5fa8", "#8c8c3a")
MAX_SCATTER_POINTS = 4000


class _Frame:
    """Maps data coordinates to pixels inside the plot area."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1.0)
        self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1.0)

    def x(self, v: float) -> float:
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return HEIGHT - BOTTOM - (v - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v != 0 else "0"


def _open(kind: str, title: str, attrs: Mapping[str, object] = ()) -> list[str]:  # type: ignore[assignment]
    extra = "".join(f' data-{k}="{escape(str(v))}"' for k, v in dict(attrs).items())
    return [
        f'<svg class="plot plot-{kind}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}"{extra}>',
        f"<title>{escape(title)}</title>",
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">'
        f"{escape(title)}</text>",
    ]


def _axes(f: _Frame, x_label: str, y_label: str, x_ticks: bool = True) -> list[str]:
    out = [
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#333"/>',
    ]
    for t in _ticks(f.y0, f.y1):
        y = f.y(t)
        out.append(f'<line x1="{LEFT - 4}" y1="{y:.1f}" x2="{LEFT}" y2="{y:.1f}" stroke="#333"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>')
    if x_ticks:
        for t in _ticks(f.x0, f.x1):
            x = f.x(t)
            out.append(
                f'<line x1="{x:.1f}" y1="{HEIGHT - BOTTOM}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM + 4}" '
                'stroke="#333"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 15}" text-anchor="middle" font-size="10">'
                f"{_fmt(t)}</text>"
            )
    out.append(
        f'<text class="x-label" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" text-anchor="middle" '
        f'font-size="11">{escape(x_label)}</text>'
    )
    out.append(
        f'<text class="y-label" x="14" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 14 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(y_label)}</text>'
    )
    return out


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def histogram(
    values: Sequence[float] | np.ndarray,
    title: str,
    x_label: str,
    bins: int = 30,
    value_range: tuple[float, float] | None = None,
    mean_line: bool = True,
) -> str:
    """Counts of the finite values in `bins` equal bins over `value_range` (default: the values' range), with a
    dashed line at the mean unless `mean_line` is False; ``data-count`` = how many values were drawn."""
    a = _finite(values)
    if value_range is not None:
        a = a[(a >= value_range[0]) & (a <= value_range[1])]
        lo, hi = value_range
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(a, bins=bins, range=(lo, hi))
    f = _Frame(lo, hi, 0.0, float(max(counts.max(initial=0), 1)) * 1.05)
    out = _open("histogram", title, {"count": int(a.size), "mean": f"{a.mean():.4f}" if a.size else "nan"})
    out += _axes(f, x_label, "neurons")
    for c, left, right in zip(counts, edges[:-1], edges[1:], strict=True):
        if c == 0:
            continue
        x, w = f.x(left), max(f.x(right) - f.x(left) - 1, 1)
        y = f.y(c)
        out.append(
            f'<rect class="bin" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{HEIGHT - BOTTOM - y:.1f}" '
            f'fill="{COLORS[0]}" data-count="{int(c)}"><title>{_fmt(left)} to {_fmt(right)}: {int(c)}</title>'
            "</rect>"
        )
    if a.size and mean_line:
        x = f.x(float(a.mean()))
        out.append(
            f'<line class="mean" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" stroke="#b04a5a" '
            'stroke-dasharray="4 3"/>'
        )
    out.append("</svg>")
    return "\n".join(out)


def bars(values: Mapping[str, float], title: str, y_label: str) -> str:
    """One labelled bar per key; NaN values are drawn as an empty slot labelled n/a."""
    labels = list(values)
    v = np.array([values[k] for k in labels], dtype=np.float64)
    finite = v[np.isfinite(v)]
    lo = min(0.0, float(finite.min()) if finite.size else 0.0)
    hi = max(0.0, float(finite.max()) if finite.size else 1.0)
    f = _Frame(0, max(len(labels), 1), lo, hi + 0.08 * (hi - lo or 1.0))
    out = _open("bars", title, {"bars": len(labels)})
    out += _axes(f, "", y_label, x_ticks=False)
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    for i, (label, value) in enumerate(zip(labels, v, strict=True)):
        x = LEFT + i * slot + slot * 0.15
        short = label if len(label) <= 24 else label[:10] + "…" + label[-10:]
        out.append(
            f'<text class="bar-label" x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
            f'font-size="9">{escape(short)}</text>'
        )
        if not math.isfinite(value):
            out.append(
                f'<text class="bar-value" x="{x + slot * 0.35:.1f}" y="{f.y(0) - 4:.1f}" text-anchor="middle" '
                f'font-size="10" data-label="{escape(label)}" data-value="nan">n/a</text>'
            )
            continue
        y0, y1 = sorted((f.y(0.0), f.y(float(value))))
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{y0:.1f}" width="{slot * 0.7:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
            f'fill="{COLORS[i % len(COLORS)]}" data-label="{escape(label)}" data-value="{value:.6f}">'
            f"<title>{escape(label)}: {value:.4f}</title></rect>"
        )
        out.append(
            f'<text class="bar-value" x="{x + slot * 0.35:.1f}" y="{y0 - 4:.1f}" text-anchor="middle" '
            f'font-size="10">{value:.3f}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def scatter(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    title: str,
    x_label: str,
    y_label: str,
    groups: Sequence[str] | None = None,
) -> str:
    """Points where both coordinates are finite (at most MAX_SCATTER_POINTS, evenly subsampled), coloured by
    group; ``data-points`` = how many pairs were finite."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    g = np.asarray(groups if groups is not None else [""] * len(xa), dtype=object)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya, g = xa[keep], ya[keep], g[keep]
    n = int(xa.size)
    if n > MAX_SCATTER_POINTS:
        idx = np.linspace(0, n - 1, MAX_SCATTER_POINTS).astype(int)
        xa, ya, g = xa[idx], ya[idx], g[idx]
    pad = lambda lo, hi: (lo - 0.05 * (hi - lo or 1.0), hi + 0.05 * (hi - lo or 1.0))  # noqa: E731
    f = _Frame(
        *pad(float(xa.min()) if n else 0.0, float(xa.max()) if n else 1.0),
        *pad(float(ya.min()) if n else 0.0, float(ya.max()) if n else 1.0),
    )
    out = _open("scatter", title, {"points": n})
    out += _axes(f, x_label, y_label)
    names = sorted({str(v) for v in g})
    color = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)}
    for xv, yv, gv in zip(xa, ya, g, strict=True):
        out.append(
            f'<circle cx="{f.x(xv):.1f}" cy="{f.y(yv):.1f}" r="2" fill="{color[str(gv)]}" fill-opacity="0.6"/>'
        )
    for i, name in enumerate(n for n in names if n):
        out.append(
            f'<text class="legend" x="{WIDTH - RIGHT - 4}" y="{TOP + 12 + 12 * i}" text-anchor="end" '
            f'font-size="9" fill="{color[name]}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def lines(
    series: Mapping[str, Sequence[float] | np.ndarray],
    title: str,
    x_label: str,
    y_label: str,
    x_offset: int = 0,
) -> str:
    """One polyline per named series over its index + `x_offset` (frames); a legend names them."""
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in series.items()}
    allv = np.concatenate([a[np.isfinite(a)] for a in arrays.values()] or [np.zeros(1)])
    length = max((a.size for a in arrays.values()), default=1)
    lo, hi = float(allv.min()), float(allv.max())
    f = _Frame(x_offset, x_offset + max(length - 1, 1), lo, hi + 0.05 * (hi - lo or 1.0))
    out = _open("lines", title, {"series": len(arrays)})
    out += _axes(f, x_label, y_label)
    for i, (name, a) in enumerate(arrays.items()):
        pts = " ".join(f"{f.x(x_offset + j):.1f},{f.y(v):.1f}" for j, v in enumerate(a) if math.isfinite(v))
        out.append(
            f'<polyline class="series" points="{pts}" fill="none" stroke="{COLORS[i % len(COLORS)]}" '
            f'stroke-width="1.2" data-name="{escape(name)}"/>'
        )
        out.append(
            f'<text class="legend" x="{WIDTH - RIGHT - 4}" y="{TOP + 12 + 12 * i}" text-anchor="end" '
            f'font-size="10" fill="{COLORS[i % len(COLORS)]}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def xy_lines(
    series: Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    title: str,
    x_label: str,
    y_label: str,
    markers: Sequence[str] = (),
    x_range: tuple[float, float] | None = None,
) -> str:
    """One polyline per named (x, y) series; series named in `markers` are drawn as points instead."""
    arrays = {k: (np.asarray(x, np.float64), np.asarray(y, np.float64)) for k, (x, y) in series.items()}
    xs = np.concatenate([x[np.isfinite(x)] for x, _ in arrays.values()] or [np.zeros(1)])
    ys = np.concatenate([y[np.isfinite(y)] for _, y in arrays.values()] or [np.zeros(1)])
    x0, x1 = x_range or (float(xs.min()), float(xs.max()))
    lo, hi = float(ys.min()), float(ys.max())
    f = _Frame(x0, x1, lo - 0.05 * (hi - lo or 1.0), hi + 0.05 * (hi - lo or 1.0))
    out = _open("xy", title, {"series": len(arrays)})
    out += _axes(f, x_label, y_label)
    for i, (name, (x, y)) in enumerate(arrays.items()):
        color = COLORS[i % len(COLORS)]
        keep = np.isfinite(x) & np.isfinite(y)
        if name in markers:
            for xv, yv in zip(x[keep], y[keep], strict=True):
                out.append(
                    f'<circle class="point" cx="{f.x(xv):.1f}" cy="{f.y(yv):.1f}" r="3" fill="{color}" '
                    f'data-name="{escape(name)}" data-x="{xv:.4g}" data-y="{yv:.4g}"/>'
                )
        else:
            pts = " ".join(f"{f.x(xv):.1f},{f.y(yv):.1f}" for xv, yv in zip(x[keep], y[keep], strict=True))
            out.append(
                f'<polyline class="series" points="{pts}" fill="none" stroke="{color}" stroke-width="1.4" '
                f'data-name="{escape(name)}"/>'
            )
        out.append(
            f'<text class="legend" x="{WIDTH - RIGHT - 4}" y="{TOP + 12 + 12 * i}" text-anchor="end" '
            f'font-size="10" fill="{color}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def orientation_colour(orientation_deg: float) -> str:
    """A hue per orientation (0-180 deg around the colour wheel once)."""
    return f"hsl({(2 * orientation_deg) % 360:.0f}, 75%, 45%)"


def screen_map(
    centres: np.ndarray,
    orientations: np.ndarray,
    title: str,
    screen: tuple[int, int],
    truth: np.ndarray | None = None,
) -> str:
    """Points at (row, col) screen positions over a `screen` = (height, width) frame drawn to scale, coloured by
    orientation (degrees); optional `truth` (N, 2) draws a line from each true centre to the estimate.
    ``data-points`` = how many finite centres were drawn."""
    h, w = screen
    scale = min((WIDTH - LEFT - RIGHT) / w, (HEIGHT - TOP - BOTTOM) / h)
    ox, oy = LEFT, TOP

    def px(row: float, col: float) -> tuple[float, float]:
        return ox + (col + 0.5) * scale, oy + (row + 0.5) * scale

    c = np.asarray(centres, np.float64).reshape(-1, 2)
    o = np.asarray(orientations, np.float64).ravel()
    keep = np.isfinite(c).all(axis=1) & np.isfinite(o)
    out = _open("screen", title, {"points": int(keep.sum()), "height": h, "width": w})
    out.append(
        f'<rect class="screen" x="{ox}" y="{oy}" width="{w * scale:.1f}" height="{h * scale:.1f}" '
        'fill="#f4f4f4" stroke="#333"/>'
    )
    for col in range(0, w + 1, 16):
        x, _ = px(0, col - 0.5)
        out.append(
            f'<text x="{x:.1f}" y="{oy + h * scale + 14:.1f}" text-anchor="middle" font-size="10">{col}</text>'
        )
    for row in range(0, h + 1, 12):
        _, y = px(row - 0.5, 0)
        out.append(f'<text x="{ox - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{row}</text>')
    out.append(
        f'<text class="x-label" x="{ox + w * scale / 2:.1f}" y="{oy + h * scale + 30:.1f}" text-anchor="middle" '
        'font-size="11">screen column (px); colour: preferred orientation</text>'
    )
    if truth is not None:
        t = np.asarray(truth, np.float64).reshape(-1, 2)
        for (r0, c0), (r1, c1) in zip(t[keep], c[keep], strict=True):
            (x0, y0), (x1, y1) = px(r0, c0), px(r1, c1)
            out.append(
                f'<line class="error" x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#999" '
                'stroke-width="0.8"/>'
            )
    for (r, cc), ori in zip(c[keep], o[keep], strict=True):
        x, y = px(r, cc)
        out.append(
            f'<circle class="centre" cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{orientation_colour(ori)}" '
            f'data-orientation="{ori:.1f}"/>'
        )
    for i, ori in enumerate(range(0, 180, 45)):  # legend: a few orientations, right of the screen
        x, y = ox + w * scale + 14, oy + 10 + 16 * i
        out.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="4" fill="{orientation_colour(ori)}"/>'
            f'<text x="{x + 8:.1f}" y="{y + 4}" font-size="10">{ori}°</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def heatmap(
    values: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    title: str,
    screen: tuple[int, int],
    marks: Mapping[str, tuple[float, float]] = (),  # type: ignore[assignment]
) -> str:
    """A map sampled on a grid of screen positions (rows (R,) x cols (C,), pixels), drawn to scale over the
    `screen` (height, width): red above 0, blue below (symmetric scale); `marks` name points (row, col) drawn
    as crosses (first) and rings (others). ``data-max`` = the largest |value|."""
    v = np.nan_to_num(np.asarray(values, np.float64))
    h, w = screen
    scale = min((WIDTH - LEFT - RIGHT) / w, (HEIGHT - TOP - BOTTOM) / h)
    top = float(np.abs(v).max()) or 1.0
    dr = float(rows[1] - rows[0]) if len(rows) > 1 else 1.0
    dc = float(cols[1] - cols[0]) if len(cols) > 1 else 1.0
    out = _open("heatmap", title, {"max": f"{top:.6g}", "cells": int(v.size)})
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{w * scale:.1f}" height="{h * scale:.1f}" fill="#fff" stroke="#333"/>'
    )
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            a = v[i, j] / top
            color = "178,24,43" if a >= 0 else "33,102,172"
            x = LEFT + (c - dc / 2 + 0.5) * scale
            y = TOP + (r - dr / 2 + 0.5) * scale
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{dc * scale:.1f}" height="{dr * scale:.1f}" '
                f'fill="rgb({color})" fill-opacity="{min(abs(a), 1.0):.3f}"/>'
            )
    for k, (name, (r, c)) in enumerate(dict(marks).items()):
        if not (math.isfinite(r) and math.isfinite(c)):
            continue
        x, y = LEFT + (c + 0.5) * scale, TOP + (r + 0.5) * scale
        shape = (
            f'<path d="M{x - 6:.1f},{y:.1f}H{x + 6:.1f}M{x:.1f},{y - 6:.1f}V{y + 6:.1f}" stroke="#000" stroke-width="2"/>'
            if k == 0
            else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="none" stroke="#2a2" stroke-width="2"/>'
        )
        out.append(
            f'<g class="mark" data-name="{escape(name)}" data-row="{r:.2f}" data-col="{c:.2f}">{shape}</g>'
            f'<text class="legend" x="{WIDTH - RIGHT - 4}" y="{HEIGHT - 30 + 12 * k}" text-anchor="end" '
            f'font-size="10">{"+" if k == 0 else "o"} {escape(name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
