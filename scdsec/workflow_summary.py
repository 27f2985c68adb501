"""What a workflow run made, in a few lines for the terminal (the Snakefile's ``onsuccess``).

Read from the ``metrics.tsv`` of each dataset (:data:`scdsec.evaluate.METRIC_COLUMNS`), with
the standard library only: Snakemake's own process runs this, in whatever environment it was
installed in.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections.abc import Mapping

__all__ = ["run_summary"]

PathLike = str | os.PathLike

#: Where a training ran when the machine had no GPU that torch could see.
CPU = "cpu"


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _score(values: list[float]) -> str:
    """``0.452``, or ``0.452 ± 0.013`` over seeds; ``—`` when nothing was scored."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _distinct(values) -> str:
    return ", ".join(dict.fromkeys(v for v in values if v)) or "—"


def _method_rows(rows: list[dict[str, str]], labelled: bool) -> list[list[str]]:
    """One line per method (its seeds together), in the table's order."""
    methods = dict.fromkeys(row["method"] for row in rows)
    lines = []
    for method in methods:
        own = [row for row in rows if row["method"] == method]
        seeds = f"{len(own)} seeds" if len(own) > 1 else f"seed {own[0]['seed']}"
        missing = [row for row in own if row.get("status", "ok") != "ok"]
        if len(missing) == len(own):
            note = _distinct(row.get("note", "") for row in missing)
            lines.append([method, seeds, f"missing: {note}"])
            continue
        ran = [row for row in own if row.get("status", "ok") == "ok"]
        k = _distinct(f"{_number(row.get('n_clusters')):.0f}" for row in ran)
        line = [method, seeds]
        if labelled:
            line += [
                "NMI " + _score([_number(row.get("nmi")) for row in ran]),
                "ARI " + _score([_number(row.get("ari")) for row in ran]),
            ]
        if "ilisi" in ran[0]:  # a dataset with a batch key: its batch mixing
            line.append("iLISI " + _score([_number(row.get("ilisi")) for row in ran]))
        line += [f"K {k}, {_distinct(row.get('n_clusters_from', '') for row in ran)}"]
        device = _distinct(row.get("device", "") for row in ran)
        if device != "—":
            line.append(f"on {device}")
        if missing:
            line.append(f"{len(missing)} seed(s) missing")
        lines.append(line)
    return lines


def _columns(lines: list[list[str]]) -> list[str]:
    """Lines of cells aligned in columns (the last cell of a line is not padded)."""
    widths: dict[int, int] = {}
    for line in lines:
        for i, cell in enumerate(line[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    return [
        "  ".join(cell.ljust(widths.get(i, 0)) for i, cell in enumerate(line)).rstrip()
        for line in lines
    ]


def run_summary(tables: Mapping[str, PathLike], *, gpu_requested: bool = False) -> str:
    """A short account of a run: per dataset its scores table, each method's NMI and ARI
    (mean ± sd over seeds; only where the dataset has true labels), the K it found with how K
    was chosen (``given``, ``found``, or ``auto`` with the estimate and its range) and the
    device it trained on.

    Parameters
    ----------
    tables
        ``{dataset: path of its metrics.tsv}``; a path that does not exist is left out.
    gpu_requested
        Whether the run was given a GPU (``--resources gpu=1`` or more): a training that
        ran on the CPU all the same is then pointed out.

    Returns
    -------
    The text, several lines; empty when no table exists.
    """
    out: list[str] = []
    on_cpu: list[str] = []
    for dataset, path in tables.items():
        if not os.path.isfile(path):
            continue
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        labelled = any(row.get("labels", "true") == "true" for row in rows)
        head = f"{dataset}: {path}"
        if not labelled:
            head += " (no true labels: no NMI or ARI)"
        out.append(head)
        out += ["  " + line for line in _columns(_method_rows(rows, labelled))]
        on_cpu += [
            f"{dataset} {row['method']}"
            for row in rows
            if row.get("device", "") == CPU and row.get("status", "ok") == "ok"
        ]
    if not out:
        return ""
    text = ["Results of this run (every score in the tables named):", *out]
    if gpu_requested and on_cpu:
        text.append(
            "A GPU was asked for (--resources gpu=…), but these trainings ran on the CPU: "
            f"{', '.join(dict.fromkeys(on_cpu))} — torch saw no CUDA device on this machine."
        )
    text.append("Every figure and table in one page: snakemake --report report.html")
    return "\n".join(text)
