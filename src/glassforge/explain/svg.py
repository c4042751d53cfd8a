"""Small inline SVG charts (no libraries, no scripts): lines, scatter paths, histograms, bars."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
W, H = 560, 260
PAD_L, PAD_R, PAD_T, PAD_B = 58, 16, 16, 40


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + k * step for k in range(int((hi - start) / step + 1e-9) + 1)]


def _label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}"
    return f"{v:.4g}"


class Axes:
    """A plot area mapping data (x, y) to pixels, optionally with a log-10 y axis."""

    def __init__(self, xr: tuple[float, float], yr: tuple[float, float], *, logy: bool = False,
                 width: int = W, height: int = H, pad_bottom: int = PAD_B):  # fmt: skip
        self.logy, self.w, self.h, self.pb = logy, width, height, pad_bottom
        f = (lambda v: math.log10(max(v, 1e-12))) if logy else float
        self.f = f
        x0, x1 = xr
        y0, y1 = f(yr[0]), f(yr[1])
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
        if y1 == y0:
            y0, y1 = y0 - 1, y1 + 1
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def px(self, x: float) -> float:
        return PAD_L + (x - self.x0) / (self.x1 - self.x0) * (self.w - PAD_L - PAD_R)

    def py(self, y: float) -> float:
        return self.h - self.pb - (self.f(y) - self.y0) / (self.y1 - self.y0) * (self.h - PAD_T - self.pb)

    def frame(self, xlabel: str, ylabel: str) -> list[str]:
        out = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{self.w - PAD_L - PAD_R}" '
               f'height="{self.h - PAD_T - self.pb}" fill="#fff" stroke="#999"/>']  # fmt: skip
        for t in _ticks(self.x0, self.x1):
            x = self.px(t)
            out.append(
                f'<line x1="{x:.1f}" y1="{self.h - self.pb}" x2="{x:.1f}" y2="{self.h - self.pb + 4}" stroke="#666"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{self.h - self.pb + 16}" text-anchor="middle">{_label(t)}</text>'
            )
        if self.logy:
            yt = [10.0**k for k in range(math.floor(self.y0), math.ceil(self.y1) + 1)]
            yt = [v for v in yt if self.y0 - 1e-9 <= math.log10(v) <= self.y1 + 1e-9] or [10**self.y0]
        else:
            yt = _ticks(self.y0, self.y1)
        for t in yt:
            y = self.py(t)
            out.append(
                f'<line x1="{PAD_L - 4}" y1="{y:.1f}" x2="{self.w - PAD_R}" y2="{y:.1f}" stroke="#eee"/>'
            )
            out.append(f'<text x="{PAD_L - 7}" y="{y + 4:.1f}" text-anchor="end">{_label(t)}</text>')
        out.append(
            f'<text x="{(PAD_L + self.w - PAD_R) / 2:.0f}" y="{self.h - 6}" text-anchor="middle">{esc(xlabel)}</text>'
        )
        out.append(f'<text x="14" y="{(PAD_T + self.h - self.pb) / 2:.0f}" text-anchor="middle" '
                   f'transform="rotate(-90 14 {(PAD_T + self.h - self.pb) / 2:.0f})">{esc(ylabel)}</text>')  # fmt: skip
        return out


def _svg(body: list[str], width: int = W, height: int = H, title: str = "") -> str:
    t = f"<title>{esc(title)}</title>" if title else ""
    return (f'<svg viewBox="0 0 {width} {height}" class="chart" '
            f'font-family="sans-serif" font-size="11" role="img">{t}{"".join(body)}</svg>')  # fmt: skip


def _legend(items: Sequence[tuple[str, str]], width: int = W) -> list[str]:
    out, x = [], PAD_L + 8
    for label, color in items:
        out.append(f'<rect x="{x}" y="{PAD_T + 6}" width="12" height="3" fill="{color}"/>')
        out.append(f'<text x="{x + 16}" y="{PAD_T + 11}">{esc(label)}</text>')
        x += 24 + 7 * len(label)
    return out


def lines(xs: Sequence[float], series: Sequence[tuple[str, Sequence[float], str]], *, xlabel: str = "",
          ylabel: str = "", logy: bool = False, dots: bool = True, title: str = "",
          points: Sequence[tuple[float, float]] = ()) -> str:  # fmt: skip
    """Line chart of several series over the same ``xs``; ``points`` are marked on top."""
    ys = [v for _, s, _ in series for v in s if math.isfinite(v) and (v > 0 or not logy)]
    ax = Axes((min(xs), max(xs)), (min(ys), max(ys)) if ys else (0, 1), logy=logy)
    body = ax.frame(xlabel, ylabel)
    body += [f'<circle cx="{ax.px(x):.1f}" cy="{ax.py(y):.1f}" r="3.5" fill="#d62728"/>' for x, y in points]
    for _, s, color in series:
        pts = [
            (ax.px(x), ax.py(y))
            for x, y in zip(xs, s, strict=True)
            if math.isfinite(y) and (y > 0 or not logy)
        ]
        body.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            color, " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)))  # fmt: skip
        if dots:
            body += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>' for a, b in pts]
    if len(series) > 1:
        body += _legend([(label, color) for label, _, color in series])
    return _svg(body, title=title)


def paths(tracks: Sequence[tuple[str, Sequence[tuple[float, float]], str]], *, xlabel: str = "",
          ylabel: str = "", label_every: int = 1, title: str = "") -> str:  # fmt: skip
    """2-D paths (each a sequence of points) with numbered points; the first point is a ring."""
    xs = [p[0] for _, pts, _ in tracks for p in pts]
    ys = [p[1] for _, pts, _ in tracks for p in pts]
    mx, my = (max(xs) - min(xs)) * 0.06 + 1e-9, (max(ys) - min(ys)) * 0.06 + 1e-9
    ax = Axes((min(xs) - mx, max(xs) + mx), (min(ys) - my, max(ys) + my), height=360)
    body = ax.frame(xlabel, ylabel)
    for _, pts, color in tracks:
        p = [(ax.px(x), ax.py(y)) for x, y in pts]
        body.append('<polyline fill="none" stroke="{}" stroke-width="1.5" stroke-opacity="0.7" points="{}"/>'.format(
            color, " ".join(f"{a:.1f},{b:.1f}" for a, b in p)))  # fmt: skip
        for k, (a, b) in enumerate(p):
            r, fill = (5, "#fff") if k == 0 else (3, color)
            body.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{r}" fill="{fill}" stroke="{color}"/>')
            if k % label_every == 0 or k == len(p) - 1:
                body.append(f'<text x="{a + 5:.1f}" y="{b - 5:.1f}" fill="{color}">{k}</text>')
    body += _legend([(label, color) for label, _, color in tracks])
    return _svg(body, height=360, title=title)


def scatter(points: Sequence[tuple[float, float, str, str]], *, xlabel: str = "", ylabel: str = "",
            title: str = "") -> str:  # fmt: skip
    """Labelled points (x, y, label, colour)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = (max(xs) - min(xs)) * 0.08 + 1e-9, (max(ys) - min(ys)) * 0.08 + 1e-9
    ax = Axes((min(xs) - mx, max(xs) + mx), (min(ys) - my, max(ys) + my), height=320)
    body = ax.frame(xlabel, ylabel)
    for x, y, label, color in points:
        a, b = ax.px(x), ax.py(y)
        body.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="4" fill="{color}"/>')
        if label:
            body.append(f'<text x="{a + 6:.1f}" y="{b + 4:.1f}" fill="{color}">{esc(label)}</text>')
    return _svg(body, height=320, title=title)


def histogram(values: Sequence[float], *, bins: int = 40, pdf: Callable[[float], float] | None = None,
              xlabel: str = "", ylabel: str = "", marks: Sequence[float] = (), title: str = "") -> str:  # fmt: skip
    """Histogram as a density (area 1), with an optional density curve and vertical marks."""
    lo, hi = min(values), max(values)
    lo, hi = min([lo, *marks]), max([hi, *marks])
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    dens = [c / (len(values) * width) for c in counts]
    curve = [pdf(lo + (k + 0.5) * (hi - lo) / 200) for k in range(200)] if pdf else []
    ax = Axes((lo, hi), (0, max(dens + curve) * 1.08))
    body = ax.frame(xlabel, ylabel)
    for k, d in enumerate(dens):
        x0, x1 = ax.px(lo + k * width), ax.px(lo + (k + 1) * width)
        body.append(f'<rect x="{x0:.1f}" y="{ax.py(d):.1f}" width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
                    f'height="{ax.py(0) - ax.py(d):.1f}" fill="#8fb3d9"/>')  # fmt: skip
    if curve:
        pts = " ".join(
            f"{ax.px(lo + (k + 0.5) * (hi - lo) / 200):.1f},{ax.py(c):.1f}" for k, c in enumerate(curve)
        )
        body.append(f'<polyline fill="none" stroke="#d62728" stroke-width="2" points="{pts}"/>')
    for m in marks:
        body.append(f'<line x1="{ax.px(m):.1f}" y1="{PAD_T}" x2="{ax.px(m):.1f}" y2="{H - PAD_B}" '
                    'stroke="#333" stroke-dasharray="4 3"/>')  # fmt: skip
    return _svg(body, title=title)


def bars(values: Sequence[float], labels: Sequence[str], *, ylabel: str = "", colors: Sequence[str] = (),
         title: str = "") -> str:  # fmt: skip
    """Vertical bars with rotated labels."""
    n = len(values)
    height = 300 + 6 * max((len(label) for label in labels), default=0)
    ax = Axes((0, n), (0, max(values) * 1.1 if values else 1), height=height, pad_bottom=20 + 6 * max(
        (len(label) for label in labels), default=0))  # fmt: skip
    body = ax.frame("", ylabel)[:1]  # the frame box only; ticks on y below
    for t in _ticks(0, max(values) * 1.1 if values else 1):
        y = ax.py(t)
        body.append(f'<text x="{PAD_L - 7}" y="{y + 4:.1f}" text-anchor="end">{_label(t)}</text>')
        body.append(f'<line x1="{PAD_L - 4}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eee"/>')
    slot = (W - PAD_L - PAD_R) / max(n, 1)
    for k, (v, label) in enumerate(zip(values, labels, strict=True)):
        x = PAD_L + k * slot
        color = colors[k] if k < len(colors) else PALETTE[0]
        body.append(f'<rect x="{x + slot * 0.15:.1f}" y="{ax.py(v):.1f}" width="{slot * 0.7:.1f}" '
                    f'height="{ax.py(0) - ax.py(v):.1f}" fill="{color}"/>')  # fmt: skip
        lx, ly = x + slot / 2, ax.py(0) + 10
        body.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" transform="rotate(-50 {lx:.1f} {ly})">'
                    f"{esc(label)}</text>")  # fmt: skip
    return _svg(body, height=height, title=title)
