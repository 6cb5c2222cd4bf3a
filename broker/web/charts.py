"""Charts drawn here as inline SVG, so the pages need nothing from the internet."""
from __future__ import annotations

from markupsafe import escape

__all__ = ["spark_svg", "trend_svg"]


def trend_svg(days: list[dict], t) -> str:
    """Bars of daily counted ratings, a line of the daily satisfaction rate (0-100 %), inline SVG."""
    width, height, left, right, top, bottom = 720, 220, 40, 40, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(days))
    peak = max([d["ratings"] for d in days] + [1])
    step = plot_w / n
    bar_w = max(1.0, step * 0.7)
    parts = [f'<svg id="trend-chart" class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(t("officer.trend"))}" preserveAspectRatio="xMidYMid meet">']
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{round(peak * frac)}</text>')
        parts.append(f'<text class="axis rate" x="{width - right + 4}" y="{y + 4:.1f}">{round(frac * 100)}%</text>')
    points = []
    for i, d in enumerate(days):
        x = left + i * step + (step - bar_w) / 2
        h = plot_h * d["ratings"] / peak
        parts.append(f'<rect class="bar" data-day="{d["day"]}" data-ratings="{d["ratings"]}" x="{x:.1f}" '
                     f'y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
                     f'<title>{d["day"]}: {d["ratings"]}</title></rect>')
        if d["rate"] is not None:
            points.append(f"{left + i * step + step / 2:.1f},{top + plot_h * (1 - d['rate']):.1f}")
        if n <= 31 and (i % max(1, n // 8) == 0 or i == n - 1):
            parts.append(f'<text class="axis" x="{left + i * step + step / 2:.1f}" y="{height - 8}" '
                         f'text-anchor="middle">{d["day"][8:]}</text>')
    if points:
        parts.append(f'<polyline class="rate-line" points="{" ".join(points)}"/>')
        for p in points:
            x, y = p.split(",")
            parts.append(f'<circle class="rate-dot" cx="{x}" cy="{y}" r="2.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def spark_svg(days: list[dict], label: str) -> str:
    """A small line of the daily satisfaction rate (0-100 %), for a table cell; days without ratings are gaps."""
    width, height, pad = 120, 28, 2
    n = max(1, len(days))
    step = (width - 2 * pad) / max(1, n - 1)
    parts = [f'<svg class="spark" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">']
    run: list[str] = []
    for i, d in enumerate(days + [{"rate": None}]):
        if d["rate"] is not None:
            run.append(f"{pad + i * step:.1f},{pad + (height - 2 * pad) * (1 - d['rate']):.1f}")
            continue
        if len(run) == 1:
            x, y = run[0].split(",")
            parts.append(f'<circle class="rate-dot" cx="{x}" cy="{y}" r="1.5"/>')
        elif run:
            parts.append(f'<polyline class="rate-line" points="{" ".join(run)}"/>')
        run = []
    parts.append("</svg>")
    return "".join(parts)
