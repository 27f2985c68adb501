"""Scoring the workflow's results: per-dataset metrics, the benchmark table, the experiments.

* :func:`evaluate_dataset`: one row per method and seed (``results/{dataset}/metrics.tsv``,
  columns :data:`METRIC_COLUMNS`): NMI, ARI, ACC, AMI against the true labels (on the labelled
  cells only, :func:`scdsec.metrics.score_labelled`; ``n_unlabelled`` counts the cells left
  out), the number of clusters found and how K was chosen (``n_clusters_from``), the device
  the method trained on, the silhouette of the labels in the common PCA space
  (``silhouette_pca``, comparable across methods) and in the method's own embedding
  (``silhouette_own``: how compact the method's clusters are in its own space, which every
  clustering objective makes high, so it compares a method with itself only), k-means in
  the method's embedding and in the PCA space of the normalised expression (the paper's
  Table 4), and the time and peak memory of the method's steps
  (Snakemake's benchmark files). A dataset with a batch key gets :data:`BATCH_COLUMNS` too:
  the batch mixing of each method's clustered space (scaled iLISI on its kNN graph,
  :func:`scdsec.metrics.ilisi`) and of its clusters (:func:`scdsec.metrics.batch_entropy`).
  A dataset without labels gets the label-free measures only
  (column ``labels`` is ``none``); a method that could not run keeps its row, with NaN
  measures and its ``status`` and ``note``.
* :func:`benchmark_markdown`: the paper's Table 2 — mean ± sd over seeds per dataset × method
  for NMI and ARI, the best per dataset in bold, "—" for missing, and the average over datasets.
* :func:`score_entries`: label scores of a list of runs (the ablation and sensitivity tables).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ._errors import InputError
from .metrics import (
    LABEL_MEASURES,
    batch_entropy,
    ilisi,
    labelled_cells,
    score_labelled,
    silhouette,
)

logger = logging.getLogger("scdsec")

PathLike = str | os.PathLike

#: Columns of ``results/{dataset}/metrics.tsv`` (and ``results/benchmark/scores.tsv``).
METRIC_COLUMNS = [
    "dataset",
    "method",
    "seed",
    "status",  # ok | missing (the method could not run; see note)
    "note",
    "labels",  # true | none (no true labels: label-free measures only)
    "n_clusters",  # clusters found
    "n_clusters_given",  # the K the method was given (NaN for methods that find their own)
    "n_clusters_from",  # given | found | auto: <K> (Leiden at resolution <r>; <a> at <r/2>, …)
    *LABEL_MEASURES,  # on the labelled cells only (scdsec.metrics.score_labelled)
    "n_unlabelled",  # cells without a true label, left out of the label measures
    "silhouette_pca",  # of the method's labels in the common PCA space: compares methods
    "silhouette_own",  # in the method's own embedding: not comparable across methods
    "kmeans_ari",  # k-means (K = n_clusters_eval) in the method's embedding
    "kmeans_silhouette",
    "pca_kmeans_ari",  # the same k-means in the PCA space of the normalised expression
    "pca_kmeans_silhouette",
    "n_clusters_eval",
    "seconds",  # the method's own step (Snakemake benchmark `s`)
    "max_rss_mb",
    "preprocess_seconds",  # the steps that made its input beyond QC (normalize + graph)
    "preprocess_max_rss_mb",
    "gpu_max_memory_mb",  # torch.cuda.max_memory_allocated() when trained on a GPU
    "device",  # where the method trained (cpu, cuda:0, …); empty for methods without training
]
#: Columns added to ``metrics.tsv`` for a dataset with a batch key (after
#: :data:`METRIC_COLUMNS`): without one the table is as it was.
BATCH_COLUMNS = [
    "ilisi",  # scaled iLISI (0 = one batch per neighbourhood, 1 = as mixed as possible)
    "batch_entropy",  # mean normalised entropy of the clusters' batch compositions (per cell)
]
MISSING = "—"


@dataclass
class MethodResult:
    """One method's labels and embedding, read from its ``{key}.h5ad``."""

    labels: pd.Series | None  # cluster per cell (index: cell names)
    embedding: np.ndarray | None
    status: str = "ok"
    note: str = ""
    n_clusters_given: float = math.nan
    gpu_max_memory_mb: float = math.nan
    n_clusters_from: str = ""
    device: str = ""


def n_clusters_origin(record: Mapping[str, Any], given: float) -> str:
    """How a method's K was chosen, from its ``uns`` record: ``given``, ``found`` (a method
    that finds its own number, e.g. Leiden at resolution 1) or, under ``n_clusters: auto``,
    ``auto: <K> (Leiden at resolution <r>; <a> at <r/2>, <b> at <2r>)`` — the estimate
    (:func:`scdsec.clustering.n_clusters_estimate`) and the Leiden counts at half and twice
    its resolution, the range K depends on."""
    estimate = record.get("n_clusters_estimate")
    if isinstance(estimate, Mapping) and "n_clusters" in estimate:
        return (
            f"auto: {int(estimate['n_clusters'])} (Leiden at resolution "
            f"{float(estimate['resolution']):g}; {int(estimate['n_at_half'])} at "
            f"{float(estimate['half_resolution']):g}, {int(estimate['n_at_twice'])} at "
            f"{float(estimate['twice_resolution']):g})"
        )
    if bool(record.get("n_clusters_estimated", False)):
        return "auto"
    return "found" if math.isnan(given) else "given"


def read_result(path: PathLike, key: str) -> MethodResult:
    """Read ``obs[key]``, ``obsm['X_' + key]`` and ``uns[key]`` of a method's result file.

    A file without ``obs[key]`` (a method that could not run) gives status ``missing`` with
    the reason recorded in ``uns[key]['reason']``.
    """
    adata = ad.read_h5ad(path)
    record = dict(adata.uns.get(key, {}))
    status = str(record.get("status", "ok"))
    note = str(record.get("reason", "") or record.get("note", ""))
    if key not in adata.obs:
        if status == "ok":
            status, note = "missing", f"no obs[{key!r}] in {path}"
        return MethodResult(None, None, status, note)
    embedding = adata.obsm.get(f"X_{key}")
    given = _number(
        record.get("n_clusters_given", record.get("n_clusters") if key == "scdsec" else None)
    )
    return MethodResult(
        labels=pd.Series(np.asarray(adata.obs[key]).astype(str), index=adata.obs_names),
        embedding=None if embedding is None else np.asarray(embedding, dtype=np.float64),
        status=status,
        note=note,
        n_clusters_given=given,
        gpu_max_memory_mb=_number(record.get("gpu_max_memory_mb")),
        n_clusters_from=n_clusters_origin(record, given),
        device=str(record.get("device", "")),
    )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_benchmark(path: PathLike | None) -> dict[str, float]:
    """Seconds, peak resident memory (MB) and mean CPU load (100 per busy core) of a Snakemake
    ``benchmark:`` file; NaN if absent.

    With repeated measurements (``repeat()``), the mean time and load and the largest memory.
    """
    out = {"seconds": math.nan, "max_rss_mb": math.nan, "mean_load": math.nan}
    if path is None or not Path(path).is_file():
        return out
    table = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    for key, column, summary in (
        ("seconds", "s", "mean"),
        ("max_rss_mb", "max_rss", "max"),
        ("mean_load", "mean_load", "mean"),
    ):
        if column in table and len(table):
            out[key] = float(getattr(pd.to_numeric(table[column], errors="coerce"), summary)())
    return out


def read_reference(graph: PathLike) -> tuple[pd.Series | None, np.ndarray, pd.Index]:
    """True labels (``obs['scdsec_true_label']``, None when absent), ``obsm['X_pca']`` and the
    cell names.

    ``graph`` is the workflow's graph file: the QC'd cells with the PCA of the normalised,
    scaled highly variable genes. The labels are strings, with None for cells whose label is
    missing; which cells count as labelled is left to :func:`scdsec.metrics.score_labelled`.
    """
    adata = ad.read_h5ad(graph, backed="r")
    try:
        truth = None
        if "scdsec_true_label" in adata.obs:
            truth = pd.Series(
                [
                    None if pd.isna(v) else str(v)
                    for v in adata.obs["scdsec_true_label"].astype(object)
                ],
                index=adata.obs_names.copy(),
                dtype=object,
            )
        pca = np.asarray(adata.obsm["X_pca"], dtype=np.float64)
        return truth, pca, adata.obs_names.copy()
    finally:
        adata.file.close()


def read_batches(graph: PathLike, batch_key: str) -> pd.Series:
    """Each cell's batch (``obs[batch_key]`` of the graph file, as strings, indexed by cell).

    Raises
    ------
    InputError
        The graph file has no column ``batch_key``.
    """
    adata = ad.read_h5ad(graph, backed="r")
    try:
        if batch_key not in adata.obs:
            raise InputError(f"{graph}: no obs[{batch_key!r}] (the dataset's batch_key)")
        return pd.Series(
            adata.obs[batch_key].astype(str).to_numpy(), index=adata.obs_names.copy(), dtype=object
        )
    finally:
        adata.file.close()


def batch_scores(result: MethodResult, batches: pd.Series) -> dict[str, float]:
    """:data:`BATCH_COLUMNS` of one method's result: iLISI of its embedding (the space it
    clustered) and the batch entropy of its clusters, on the cells it shares with
    ``batches``; NaN for what the result lacks."""
    row = dict.fromkeys(BATCH_COLUMNS, math.nan)
    if result.labels is None or not result.labels.index.isin(batches.index).all():
        return row
    batch = batches.reindex(result.labels.index).to_numpy()
    row["batch_entropy"] = batch_entropy(result.labels.to_numpy(), batch)
    if result.embedding is not None and len(result.embedding) == len(batch):
        row["ilisi"] = ilisi(result.embedding, batch)
    return row


def _kmeans(x: np.ndarray, k: int, seed: int, n_init: int) -> np.ndarray:
    from .baselines import kmeans_labels

    return kmeans_labels(x, k, seed=seed, n_init=n_init)


def _label_columns(
    truth: pd.Series | None, pred: pd.Series, label_key: str = "label"
) -> dict[str, float]:
    """Label measures and ``n_unlabelled`` of the cells in both ``truth`` and ``pred``.

    The cells are matched by name; :func:`scdsec.metrics.score_labelled` leaves out those
    without a true label. NaN for everything when there are no labels or no common cells.
    """
    if truth is None:
        return dict.fromkeys([*LABEL_MEASURES, "n_unlabelled"], math.nan)
    both = pd.concat([truth.rename("t"), pred.rename("p")], axis=1, join="inner")
    if both.empty:
        return dict.fromkeys([*LABEL_MEASURES, "n_unlabelled"], math.nan)
    return score_labelled(both["t"], both["p"].to_numpy(), label_key=label_key)


def _ari(truth: pd.Series | None, pred: pd.Series, label_key: str = "label") -> float:
    return _label_columns(truth, pred, label_key)["ari"] if truth is not None else math.nan


def score_result(
    result: MethodResult,
    truth: pd.Series | None,
    *,
    k_eval: int | None,
    seed: int = 0,
    kmeans_n_init: int = 10,
    label_key: str = "label",
) -> dict[str, float]:
    """The measures of one method's result (NaN for what cannot be measured).

    The label measures (``nmi``, ``ari``, ``acc``, ``ami``, ``kmeans_ari``) are computed on
    the labelled cells only (:func:`scdsec.metrics.score_labelled`; ``n_unlabelled`` counts
    those left out); ``n_clusters`` and the silhouettes on every cell.
    """
    row: dict[str, float] = dict.fromkeys(
        [
            "n_clusters",
            *LABEL_MEASURES,
            "n_unlabelled",
            "silhouette_own",
            "kmeans_ari",
            "kmeans_silhouette",
        ],
        math.nan,
    )
    if result.labels is None:
        return row
    pred = result.labels
    row["n_clusters"] = float(pred.nunique())
    row.update(_label_columns(truth, pred, label_key))
    if result.embedding is not None and len(result.embedding) == len(pred):
        emb = result.embedding
        row["silhouette_own"] = silhouette(emb, pred.to_numpy(), seed=seed)
        k = k_eval or int(pred.nunique())
        if 2 <= k < len(pred):
            km = pd.Series(_kmeans(emb, k, seed, kmeans_n_init), index=pred.index)
            row["kmeans_ari"] = _ari(truth, km, label_key)
            row["kmeans_silhouette"] = silhouette(emb, km.to_numpy(), seed=seed)
    return row


def evaluate_dataset(
    dataset: str,
    runs: Sequence[Mapping[str, Any]],
    graph: PathLike,
    *,
    n_clusters: int | str = "auto",
    kmeans_n_init: int = 10,
    label_key: str | None = None,
    batch_key: str | None = None,
) -> pd.DataFrame:
    """Score every run of one dataset: one row per method and seed (:data:`METRIC_COLUMNS`,
    and :data:`BATCH_COLUMNS` with a ``batch_key``).

    The label measures (NMI, ARI, ACC, AMI and the k-means ARIs) are computed on the cells
    with a true label only, by :func:`scdsec.metrics.score_labelled` — the function behind
    ``scdsec cluster``'s ``metrics.json`` too; ``n_unlabelled`` counts the cells left out (0
    when every cell is labelled, NaN when nothing was scored: no labels, or a missing run).
    Silhouettes and ``n_clusters`` use every cell.

    Parameters
    ----------
    dataset
        The dataset's name (the ``dataset`` column).
    runs
        One mapping per method and seed: ``method``, ``seed``, ``key`` (the ``obs``/``obsm``
        key), ``h5ad`` (its result file), ``benchmark`` (the Snakemake benchmark file of its
        step) and ``preprocess_benchmarks`` (those of the steps that made its input).
    graph
        The workflow's graph file: true labels (``obs['scdsec_true_label']``) and the PCA space.
    n_clusters
        The dataset's K; with ``auto``, k-means uses the number of true types (or, without
        labels, the number of clusters the method found).
    kmeans_n_init
        k-means restarts.
    label_key
        The dataset's name for its labels (its ``labels`` entry in the config), used in the
        error message only; default ``label`` (the graph file's ``obs['scdsec_true_label']``).
    batch_key
        The dataset's batch column in the graph file (None: no batch scores).

    Returns
    -------
    A table of ``len(runs)`` rows and the columns :data:`METRIC_COLUMNS` (+ :data:`BATCH_COLUMNS`).

    Raises
    ------
    InputError
        When the graph file has true labels (``obs['scdsec_true_label']``) but no cell is labelled.
    """
    truth, pca, cells = read_reference(graph)
    batches = None if batch_key is None else read_batches(graph, batch_key)
    key = label_key or "label"
    if truth is not None:
        try:  # no labelled cell: fail before any k-means
            labelled_cells(truth, label_key=key)
        except InputError as err:
            raise InputError(f"dataset {dataset} ({graph}): {err}") from None
    if isinstance(n_clusters, int | np.integer):
        k_eval: int | None = int(n_clusters)
    else:
        k_eval = int(truth.nunique()) if truth is not None else None
    reference: dict[int, dict[str, float]] = {}
    rows = []
    for run in runs:
        seed = int(run["seed"])
        result = read_result(run["h5ad"], run["key"])
        row: dict[str, Any] = {
            "dataset": dataset,
            "method": run["method"],
            "seed": seed,
            "status": result.status,
            "note": result.note,
            "labels": "true" if truth is not None else "none",
            "n_clusters_given": result.n_clusters_given,
            "n_clusters_from": result.n_clusters_from,
            "device": result.device,
            "n_clusters_eval": k_eval if k_eval is not None else math.nan,
            "gpu_max_memory_mb": result.gpu_max_memory_mb,
        }
        row.update(
            score_result(
                result,
                truth,
                k_eval=k_eval,
                seed=seed,
                kmeans_n_init=kmeans_n_init,
                label_key=key,
            )
        )
        if k_eval is not None and seed not in reference:
            km = pd.Series(_kmeans(pca, k_eval, seed, kmeans_n_init), index=cells)
            reference[seed] = {
                "pca_kmeans_ari": _ari(truth, km, key),
                "pca_kmeans_silhouette": silhouette(pca, km.to_numpy(), seed=seed),
            }
        row.update(
            reference.get(seed, {"pca_kmeans_ari": math.nan, "pca_kmeans_silhouette": math.nan})
        )
        row["silhouette_pca"] = _silhouette_on(pca, cells, result.labels, seed)
        if batches is not None:
            row.update(batch_scores(result, batches))
        row.update(read_benchmark(run.get("benchmark")))
        pre = [read_benchmark(p) for p in run.get("preprocess_benchmarks") or []]
        row["preprocess_seconds"] = float(sum(p["seconds"] for p in pre)) if pre else 0.0
        row["preprocess_max_rss_mb"] = max((p["max_rss_mb"] for p in pre), default=math.nan)
        rows.append(row)
        logger.info(
            "%s %s seed %d: %s, %s", dataset, run["method"], seed, result.status, _scores_line(row)
        )
    columns = METRIC_COLUMNS + (BATCH_COLUMNS if batches is not None else [])
    return pd.DataFrame(rows, columns=columns)


def _scores_line(row: Mapping[str, Any]) -> str:
    """A run's scores in words: its clusters, and NMI and ARI when the dataset is labelled
    (with the unlabelled cells left out, when there are any); no NaN for what was not scored."""
    if math.isnan(row["n_clusters"]):
        return "no clusters"
    text = f"{row['n_clusters']:.0f} clusters"
    if row["labels"] == "none":
        return text + ", unlabelled dataset: no label scores"
    text += f", NMI {row['nmi']:.3f}, ARI {row['ari']:.3f}"
    if row["n_unlabelled"] > 0:
        text += f" (on the labelled cells; {row['n_unlabelled']:.0f} unlabelled cells left out)"
    if not math.isnan(row.get("ilisi", math.nan)):
        text += f", iLISI {row['ilisi']:.3f}"
    return text


def _silhouette_on(
    space: np.ndarray, cells: pd.Index, labels: pd.Series | None, seed: int
) -> float:
    """Silhouette of ``labels`` (indexed by cell) in ``space`` (rows: ``cells``); NaN when
    there are no labels or they name other cells."""
    if labels is None or len(labels) != len(cells) or not labels.index.isin(cells).all():
        return math.nan
    return silhouette(space, labels.reindex(cells).to_numpy(), seed=seed)


def write_table(table: pd.DataFrame, output: PathLike) -> None:
    """Write a TSV atomically (NaN as empty fields would be lost: written as ``NaN``)."""
    from ._files import atomic_path

    with atomic_path(output) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.6g")


#: The look of :func:`write_html_table`'s pages (self-contained: no script, no external file).
_TABLE_STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:8px}"
    "table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
    "th{background:#eee;position:sticky;top:0}"
    "tr:nth-child(even) td{background:#f7f7f7}"
)


def write_html_table(table: pd.DataFrame, output: PathLike, *, title: str) -> None:
    """Write ``table`` as a self-contained HTML page (atomically), for the Snakemake report,
    which shows HTML in place where it offers a TSV only as a download.

    Numbers are shown to 4 significant digits, NaN as an empty cell; text is escaped. The
    TSV beside it stays the table to read with a program.
    """
    import html

    from ._files import atomic_path

    body = table.to_html(
        index=False, na_rep="", float_format=lambda x: f"{x:.4g}", border=0, escape=True
    )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_TABLE_STYLE}</style></head>\n"
        f"<body><h3>{html.escape(title)}</h3>\n{body}\n</body></html>\n"
    )
    with atomic_path(output) as tmp:
        tmp.write_text(page, encoding="utf-8")


def read_table(path: PathLike) -> pd.DataFrame:
    """Read a TSV written by :func:`write_table` (``note`` kept as text)."""
    table = pd.read_csv(path, sep="\t", na_values=["NaN"], keep_default_na=False)
    for column in ("note", "status", "labels", "n_clusters_from", "device"):
        if column in table:
            table[column] = table[column].fillna("").astype(str)
    return table


def evaluate_step(
    graph: PathLike,
    output: PathLike,
    *,
    dataset: str,
    runs: Sequence[Mapping[str, Any]],
    n_clusters: int | str = "auto",
    kmeans_n_init: int = 10,
    label_key: str | None = None,
    batch_key: str | None = None,
    html: PathLike | None = None,
) -> pd.DataFrame:
    """File-level :func:`evaluate_dataset`: score the runs, write ``metrics.tsv``.

    The entry point of ``workflow/scripts/evaluate.py``; the arguments are those of
    :func:`evaluate_dataset`, ``output`` the TSV written (:func:`write_table`) and ``html``
    the same table as a page for the report (:func:`write_html_table`; None: none). Raises
    what :func:`evaluate_dataset` raises.
    """
    table = evaluate_dataset(
        dataset,
        runs,
        graph,
        n_clusters=n_clusters,
        kmeans_n_init=kmeans_n_init,
        label_key=label_key,
        batch_key=batch_key,
    )
    write_table(table, output)
    if html is not None:
        write_html_table(table, html, title=f"Scores of every method and seed on {dataset}")
    return table


# --------------------------------------------------------------------------- benchmark table


def collect_scores(paths: Iterable[PathLike]) -> pd.DataFrame:
    """The rows of several ``metrics.tsv`` files, one table."""
    tables = [read_table(p) for p in paths]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=METRIC_COLUMNS)


def summarise(scores: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Mean, sd (ddof 1), number of scored seeds and of seeds per dataset × method."""
    grouped = scores.groupby(["dataset", "method"], sort=False)[measure]
    return pd.DataFrame(
        {
            "mean": grouped.mean(),
            "sd": grouped.std(ddof=1),
            "n": grouped.count(),
            "total": grouped.size(),
        }
    )


def _fmt(mean: float, sd: float, n: int, total: int, digits: int) -> str:
    if n == 0 or not np.isfinite(mean):
        return MISSING
    text = f"{mean:.{digits}f}"
    if n > 1 and np.isfinite(sd):
        text += f" ± {sd:.{digits}f}"
    if n < total:
        text += f" ({n}/{total} seeds)"
    return text


def markdown_table(
    scores: pd.DataFrame,
    measure: str,
    *,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    digits: int = 3,
) -> str:
    """One measure as a Markdown table: datasets × methods, mean ± sd over seeds.

    The best mean of each dataset (and of the average row) is in bold; a method without a
    score on a dataset shows "—". The last row averages each method's means over the
    labelled datasets; it is "—" for a method missing on any of them.
    """
    methods = list(methods) if methods is not None else list(dict.fromkeys(scores["method"]))
    datasets = list(datasets) if datasets is not None else list(dict.fromkeys(scores["dataset"]))
    summary = summarise(scores, measure)
    header = ["dataset", *methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    labelled = []
    means: dict[str, list[float]] = {m: [] for m in methods}
    for dataset in datasets:
        has_labels = (
            "labels" not in scores
            or (scores.loc[scores["dataset"] == dataset, "labels"] != "none").any()
        )
        cells, values = [], {}
        for method in methods:
            if (dataset, method) in summary.index:
                s = summary.loc[(dataset, method)]
                cells.append(_fmt(s["mean"], s["sd"], int(s["n"]), int(s["total"]), digits))
                values[method] = s["mean"] if s["n"] > 0 else math.nan
            else:
                cells.append(MISSING)
                values[method] = math.nan
        best = _best(values, digits)
        cells = [f"**{c}**" if m in best else c for m, c in zip(methods, cells, strict=True)]
        name = dataset if has_labels else f"{dataset} (no labels)"
        lines.append("| " + " | ".join([name, *cells]) + " |")
        if has_labels:
            labelled.append(dataset)
            for method in methods:
                means[method].append(values[method])
    average = {
        m: (float(np.mean(v)) if v and np.all(np.isfinite(v)) else math.nan)
        for m, v in means.items()
    }
    best = _best(average, digits)
    cells = [(f"{average[m]:.{digits}f}" if np.isfinite(average[m]) else MISSING) for m in methods]
    cells = [f"**{c}**" if m in best else c for m, c in zip(methods, cells, strict=True)]
    lines.append("| " + " | ".join([f"average over datasets ({len(labelled)})", *cells]) + " |")
    return "\n".join(lines) + "\n"


def _best(values: Mapping[str, float], digits: int) -> set[str]:
    """Methods whose value, rounded to ``digits``, is the highest (ties all win)."""
    finite = {m: round(v, digits) for m, v in values.items() if np.isfinite(v)}
    if not finite:
        return set()
    top = max(finite.values())
    return {m for m, v in finite.items() if v == top}


#: The batch-mixing tables of :func:`benchmark_markdown` (datasets with a batch key only).
BATCH_TITLES = {
    "ilisi": "iLISI (batch mixing of the clustered space, scaled: 1 = fully mixed)",
    "batch_entropy": "Batch entropy of the clusters (1 = each cluster mixes the batches evenly)",
}


def benchmark_markdown(
    scores: pd.DataFrame,
    *,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    measures: Sequence[str] = ("nmi", "ari"),
    digits: int = 3,
) -> str:
    """The benchmark as Markdown: one table per measure and the list of missing runs."""
    seeds = sorted(scores["seed"].unique()) if len(scores) else []
    parts = [
        "# Benchmark\n",
        f"Mean ± sd over {len(seeds)} seeds ({', '.join(map(str, seeds))}); final-epoch labels; "
        "one configuration for every dataset. Best per row in bold; "
        f"{MISSING} = no score (method missing or dataset without labels).\n",
    ]
    for measure in measures:
        parts.append(f"\n## {measure.upper()}\n\n")
        parts.append(
            markdown_table(scores, measure, methods=methods, datasets=datasets, digits=digits)
        )
    for measure, title in BATCH_TITLES.items():
        if measure not in scores:
            continue
        scored = scores.groupby("dataset", sort=False)[measure].apply(lambda v: v.notna().any())
        with_batches = [d for d in (datasets or scored.index) if scored.get(d, False)]
        if with_batches:
            parts.append(f"\n## {title}\n\n")
            parts.append(
                markdown_table(
                    scores, measure, methods=methods, datasets=with_batches, digits=digits
                )
            )
    problems = scores[scores.get("status", pd.Series("ok", index=scores.index)) != "ok"]
    if len(problems):
        parts.append("\n## Runs without scores\n\n")
        for (dataset, method, status, note), group in problems.groupby(
            ["dataset", "method", "status", "note"], sort=False
        ):
            seeds_text = ", ".join(str(s) for s in sorted(group["seed"]))
            parts.append(f"- {method} on {dataset} (seeds {seeds_text}): {status} — {note}\n")
    return "".join(parts)


def benchmark_step(
    metrics: Sequence[PathLike],
    scores_out: PathLike,
    table_out: PathLike,
    *,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Concatenate the datasets' ``metrics.tsv`` into ``scores.tsv`` and write ``table.md``."""
    from ._files import atomic_path

    scores = collect_scores(metrics)
    if methods is not None:
        scores = scores[scores["method"].isin(methods)]
    write_table(scores, scores_out)
    with atomic_path(table_out) as tmp:
        Path(tmp).write_text(benchmark_markdown(scores, methods=methods, datasets=datasets))
    return scores


# --------------------------------------------------------------------------- experiments


def score_entries(
    entries: Sequence[Mapping[str, Any]],
    graphs: Mapping[str, PathLike],
    *,
    id_columns: Sequence[str],
    measures: Sequence[str] = ("nmi", "ari", "acc"),
) -> pd.DataFrame:
    """Label scores of a list of runs, one row each (the ablation and sensitivity tables).

    Each entry has the ``id_columns`` (``dataset`` among them), ``h5ad`` and ``key``;
    ``graphs`` maps each dataset to its graph file (for the true labels). The table has the
    ``id_columns``, the ``measures``, ``method`` (when in the entries), ``status`` and
    ``note``; a dataset without labels gets NaN scores and the note ``labels: none``.
    """
    truths = {d: read_reference(g)[0] for d, g in graphs.items()}
    rows = []
    for entry in entries:
        result = read_result(entry["h5ad"], entry["key"])
        truth = truths[entry["dataset"]]
        scores = (
            _label_columns(truth, result.labels)
            if result.labels is not None
            else dict.fromkeys(LABEL_MEASURES, math.nan)
        )
        note = (
            result.note
            if truth is not None
            else "; ".join(filter(None, ["labels: none", result.note]))
        )
        rows.append(
            {
                **{c: entry[c] for c in id_columns},
                **{m: scores[m] for m in measures},
                **({"method": entry["method"]} if "method" in entry else {}),
                "status": result.status,
                "note": note,
            }
        )
    columns = [*id_columns, *measures, *(["method"] if any("method" in e for e in entries) else [])]
    return pd.DataFrame(rows, columns=[*columns, "status", "note"])


def experiment_step(
    output: PathLike,
    *,
    entries: Sequence[Mapping[str, Any]],
    graphs: Mapping[str, PathLike],
    id_columns: Sequence[str],
) -> pd.DataFrame:
    """File-level :func:`score_entries`: write the experiment's ``scores.tsv``."""
    table = score_entries(entries, graphs, id_columns=id_columns)
    write_table(table, output)
    return table
