"""Rendering results: the plain-text table for the terminal and the Markdown table for docs/PERFORMANCE.md."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.harness import Figure

HEADERS = ("figure", "ours", "reference", "ratio", "goal", "met?")


def _cells(figure: Figure) -> tuple[str, ...]:
    met = {True: "yes", False: "NO", None: "-"}[figure.met]
    if figure.ours is None:
        met = str(figure.status)
    return (
        figure.name,
        str(figure.ours) if figure.ours else str(figure.status),
        f"{figure.reference} ({figure.reference_name})" if figure.reference else "-",
        f"{figure.ratio:.2f}x" if figure.ratio is not None else "-",
        figure.goal.text if figure.goal else "(reported)",
        met,
    )


def table(figures: Sequence[Figure]) -> str:
    """A fixed-width table, one row per figure, then notes for rows that carry any."""
    rows = [HEADERS, *(_cells(f) for f in figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for figure in figures:
        for note in figure.notes:
            lines.append(f"  * {figure.name}: {note}")
    return "\n".join(lines)


def markdown(figures: Sequence[Figure]) -> str:
    """The same table as GitHub Markdown, with the method column."""
    out = ["| " + " | ".join((*HEADERS, "method")) + " |", "|" + "---|" * (len(HEADERS) + 1)]
    for figure in figures:
        cells = [c.replace("|", "\\|") for c in (*_cells(figure), figure.method)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
