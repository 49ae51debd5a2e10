"""Rendering results: the plain-text table for the terminal and the Markdown table for docs/PERFORMANCE.md."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.harness import Figure, Measure

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


def _measure_text(measure: dict[str, object] | None) -> str:
    if not measure:
        return "-"
    value = measure["value"]
    assert isinstance(value, float | int)
    return str(Measure(float(value), str(measure["unit"])))


def markdown_from_json(data: dict[str, object]) -> str:
    """The Markdown results table from a results file (``python -m benchmarks.report FILE``)."""
    out = [
        "| figure | ours | reference | ratio | goal | met? | method |",
        "|---|---|---|---|---|---|---|",
    ]
    figures = data["figures"]
    assert isinstance(figures, list)
    for f in figures:
        met = {True: "yes", False: "**NO**", None: "-"}[f["met"]]
        if f["status"] != "ok":
            met = f["status"]
        reference = _measure_text(f["reference"])
        if f["reference"]:
            reference += f" ({f['reference_name']})"
        ratio = f"{f['ratio']:.2f}x" if f["ratio"] is not None else "-"
        goal = f["goal"]["text"] if f["goal"] else "(reported)"
        method = "; ".join(part for part in (f["method"], *f["notes"]) if part)
        cells = [f["name"], _measure_text(f["ours"]), reference, ratio, goal, met, method]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def merge(files: Sequence[dict[str, object]]) -> dict[str, object]:
    """Several results files as one: a figure measured in a later file replaces the same figure before it."""
    by_name: dict[str, object] = {}
    for data in files:
        figures = data["figures"]
        assert isinstance(figures, list)
        for figure in figures:
            by_name[figure["name"]] = figure
    return {**files[-1], "figures": list(by_name.values())}


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    print(markdown_from_json(merge([json.loads(Path(name).read_text()) for name in sys.argv[1:]])))
