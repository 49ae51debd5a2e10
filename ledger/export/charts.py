"""Evaluation charts: one inline SVG per metric over the versions, threshold line and breaches marked.

matplotlib is imported here, lazily, and only by the HTML and PDF formats; text stays text in the SVG
(``svg.fonttype = none``) so a browser's text extraction and search find the labels.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from ledger.export.report import Evaluation, VersionEntry

MAX_TICKS = 12
MAX_POINTS = 2000
_COLOURS = ("#1f4e79", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f")


def metric_svg(metric: str, versions: Sequence[VersionEntry], evaluation: Evaluation) -> str | None:
    """An SVG line chart of ``metric`` per version, or None when no selected version reports it."""
    points = [(i, v.metrics[metric]) for i, v in enumerate(versions) if metric in v.metrics]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ledger-export", "font.size": 9}):
        figure = Figure(figsize=(7.2, 2.4))
        axes = figure.add_subplot()
        xs = [p[0] for p in points]
        models = sorted({versions[i].model for i in xs})
        for n, model in enumerate(models):
            series = _decimate([(i, y) for i, y in points if versions[i].model == model])
            axes.plot(
                [s[0] for s in series],
                [s[1] for s in series],
                color=_COLOURS[n % len(_COLOURS)],
                linewidth=1.2,
                marker="o" if len(points) <= 60 else None,
                markersize=3,
                label=model if len(models) > 1 else None,
            )
        threshold = next((t for t in evaluation.thresholds if t.metric == metric), None)
        if threshold is not None:
            axes.axhline(threshold.value, color="#b00020", linestyle="--", linewidth=1, label=f"threshold {threshold}")
            bad = [(i, versions[i].metrics[metric]) for i in xs if evaluation.breached(versions[i].name, metric)]
            if bad:
                axes.scatter([b[0] for b in bad], [b[1] for b in bad], color="#b00020", zorder=3, s=18, label="breach")
        if threshold is not None or len(models) > 1:
            axes.legend(loc="best", fontsize=8, frameon=False)
        step = max(1, len(versions) // MAX_TICKS)
        ticks = list(range(0, len(versions), step))
        axes.set_xticks(ticks)
        axes.set_xticklabels([versions[i].name.rpartition("-")[2] for i in ticks])
        axes.set_title(metric, loc="left", fontsize=10)
        axes.grid(True, color="#dddddd", linewidth=0.6)
        axes.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _decimate(series: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Keep each bucket's minimum and maximum when a line has more points than a chart can show.

    The drawn envelope is what the full line would look like at this size; every breach is still marked
    separately, and the table below the charts lists every value.
    """
    if len(series) <= MAX_POINTS:
        return series
    size = -(-len(series) // (MAX_POINTS // 2))
    out: list[tuple[int, float]] = []
    for start in range(0, len(series), size):
        bucket = series[start : start + size]
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        out.extend(sorted({low, high}))
    return out
