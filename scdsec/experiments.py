"""The workflow's method names: the baselines, the deep model and its experiment variants.

Every result of the workflow lives under ``results/{dataset}/{method}/{params}/seed{seed}/``
(``{params}``: a name for the run's settings, see workflow/rules/common.smk). A method name
says what ran:

=====================  ====================================================================
name                   what
=====================  ====================================================================
``scdsec``             the model as configured (``preset``, ``model``, ``train``)
``sdcn``               the same with ``model.variant: sdcn`` (the SDCN-style baseline, which
                       fuses at every layer)
``scdsec-<ablation>``  one ablation of :data:`ABLATIONS`, e.g. ``scdsec-wo_re``
``scdsec-t<t>``        trained on the top-``t`` genes (``normalized_t<t>``): ``scdsec-t500``
``scdsec-k<K>``        trained on the ``K``-neighbour graph (``graph_t<T>_k<K>``): ``scdsec-k10``
``scdsec-alpha<a>``    fusion weight α = ``a`` (:func:`format_value`): ``scdsec-alpha0.3``
``leiden``             scanpy's standard pipeline + Leiden at resolution 1
``leiden_k``           the same graph, resolution bisected to give the true K
``kmeans_pca``         k-means on the standard pipeline's 50 PCs
``scvi_leiden``        scVI latent space + Leiden (optional: needs scvi-tools)
``scvi_kmeans``        scVI latent space + k-means (optional: needs scvi-tools)
=====================  ====================================================================

The deep methods all write ``scdsec.h5ad`` (``obs['scdsec']``, ``obsm['X_scdsec']``); a
baseline ``m`` writes ``m.h5ad`` (``obs[m]``, ``obsm['X_' + m]``). This module only handles
names and parameters (no heavy imports): the workflow's rule files import it at parse time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Baselines computed by :mod:`scdsec.baselines` from the QC'd counts.
STANDARD_BASELINES = ("leiden", "leiden_k", "kmeans_pca")
#: Baselines that need scvi-tools (the ``scvi`` pip extra); opt-in.
SCVI_BASELINES = ("scvi_leiden", "scvi_kmeans")
BASELINES = STANDARD_BASELINES + SCVI_BASELINES

#: The architecture and loss ablations (the paper's Fig. 2 and Table 3): config overrides.
#: The default model already runs without the layer-wise fusion (``fusion: none``, the paper's
#: "w/o RE"), so ``with_re`` puts the paper's fusion back; ``wo_re`` is for a layer-wise model.
ABLATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "with_re": {"model": {"fusion": "layerwise"}},
    "wo_re": {"model": {"fusion": "none"}},
    "wo_ae": {"model": {"use_ae": False}},
    "wo_gcn": {"model": {"use_gcn": False}},
    "no_zinb": {"train": {"zinb_weight": 0.0}},
    "no_rec": {"train": {"rec_weight": 0.0}},
    "no_graph": {"train": {"graph_weight": 0.0}},
    "no_kl": {"train": {"kl_weight": 0.0}},
}
#: The ablations run by default: each changes the default model (``wo_re`` would not).
DEFAULT_ABLATIONS = [name for name in ABLATIONS if name != "wo_re"]
#: Name of the unmodified model in the ablation table (its results are those of ``scdsec``).
FULL = "full"

#: Parameters of the sensitivity sweeps (the paper's Figs. 3–5) and their default values.
SENSITIVITY_DEFAULTS: dict[str, list[float]] = {
    "t": [300, 500, 1000, 2000, 5000, 10000],
    "k": [5, 10, 30, 50, 100, 200],
    "alpha": [0, 0.1, 0.3, 0.5, 0.7, 0.9, 1],
}

#: Deep methods other than the experiment variants. SDCN (Bo et al. 2020) as published: layer-wise
#: fusion and DEC's start (k-means on the pretrained Z).
DEEP_BASE = {
    "scdsec": {},
    "sdcn": {
        "model": {"variant": "sdcn", "fusion": "layerwise"},
        "train": {"center_init": "embedding"},
    },
}

_ALPHA = r"(?:0|1|0\.\d{0,5}[1-9])"
#: Regular expression of every deep method name (a Snakemake wildcard constraint).
DEEP_METHOD_REGEX = (
    r"(?:scdsec|sdcn|scdsec-(?:"
    + "|".join(ABLATIONS)
    + r"|t[1-9]\d*|k[1-9]\d*|alpha"
    + _ALPHA
    + "))"
)
STANDARD_BASELINE_REGEX = "(?:" + "|".join(STANDARD_BASELINES) + ")"
SCVI_BASELINE_REGEX = "(?:" + "|".join(SCVI_BASELINES) + ")"
#: Regular expression of every method name the workflow knows.
METHOD_REGEX = f"(?:{DEEP_METHOD_REGEX}|{STANDARD_BASELINE_REGEX}|{SCVI_BASELINE_REGEX})"

#: Methods that are given the number of clusters (the dataset's ``n_clusters``, or its estimate
#: when that is ``auto``); the others find their own number.
NEEDS_N_CLUSTERS = frozenset({"leiden_k", "kmeans_pca", "scvi_kmeans"})


def is_deep(method: str) -> bool:
    """Whether ``method`` is the scDSEC model or one of its variants (trained by ``train``)."""
    return re.fullmatch(DEEP_METHOD_REGEX, method) is not None


def is_method(method: str) -> bool:
    """Whether ``method`` is a name the workflow knows."""
    return re.fullmatch(METHOD_REGEX, method) is not None


def needs_n_clusters(method: str) -> bool:
    """Whether ``method`` is given the number of clusters rather than finding it."""
    return is_deep(method) or method in NEEDS_N_CLUSTERS


def method_key(method: str) -> str:
    """The ``obs``/``obsm`` key (and file name) of a method's results: ``scdsec`` for the model."""
    if is_deep(method):
        return "scdsec"
    if method in BASELINES:
        return method
    raise ValueError(f"unknown method {method!r}")


def format_value(value: float) -> str:
    """A sweep value as it appears in a method name: ``0.3`` → ``"0.3"``, ``1.0`` → ``"1"``."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class DeepSpec:
    """What a deep method trains on and with: the graph's ``t`` and ``k``, config overrides."""

    t: int
    k: int
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def deep_spec(method: str, *, t: int, k: int) -> DeepSpec:
    """Inputs and parameter overrides of a deep method, given the run's ``t`` and ``k``.

    >>> deep_spec("scdsec-k10", t=1000, k=50)
    DeepSpec(t=1000, k=10, overrides={})
    >>> deep_spec("scdsec-alpha0.3", t=1000, k=50).overrides
    {'model': {'alpha': 0.3}}
    """
    if not is_deep(method):
        raise ValueError(f"{method!r} is not a deep method")
    if method in DEEP_BASE:
        return DeepSpec(t, k, DEEP_BASE[method])
    variant = method.split("-", 1)[1]
    if variant in ABLATIONS:
        return DeepSpec(t, k, ABLATIONS[variant])
    if variant.startswith("alpha"):
        return DeepSpec(t, k, {"model": {"alpha": float(variant[5:])}})
    if variant.startswith("t"):
        return DeepSpec(int(variant[1:]), k)
    return DeepSpec(t, int(variant[1:]))  # k<K>, the only name left


def merge_params(base: Mapping, overrides: Mapping) -> dict:
    """``{"preset", "model", "train"}`` of ``base`` with the sections of ``overrides`` updated."""
    merged = {"preset": base.get("preset", "default")}
    for section in ("model", "train"):
        merged[section] = {**(base.get(section) or {}), **(overrides.get(section) or {})}
    return merged


def ablation_method(variant: str) -> str:
    """The method name of an ablation variant (``full`` is the model itself, ``scdsec``)."""
    if variant == FULL:
        return "scdsec"
    if variant not in ABLATIONS:
        raise ValueError(f"unknown ablation {variant!r}; known: {[FULL, *ABLATIONS]}")
    return f"scdsec-{variant}"


def sensitivity_points(
    parameter: str, values: Iterable[float], *, n_genes: int | None = None
) -> list[tuple[float, str]]:
    """``[(value, method)]`` of one sensitivity sweep, in increasing order of value.

    ``t`` values are capped at ``n_genes`` (the genes left after QC) and deduplicated after
    capping, so that 5000 and 10000 on a 2000-gene dataset are one point, ``t`` = 2000.
    """
    if parameter not in SENSITIVITY_DEFAULTS:
        raise ValueError(f"unknown sensitivity parameter {parameter!r}")
    points = {}
    for value in values:
        if parameter == "t":
            value = int(value) if n_genes is None else min(int(value), int(n_genes))
            points[value] = f"scdsec-t{value}"
        elif parameter == "k":
            points[int(value)] = f"scdsec-k{int(value)}"
        else:
            points[float(format_value(value))] = f"scdsec-alpha{format_value(value)}"
    return sorted(points.items())


def count_genes_step(input: str, output: str) -> int:
    """Write the number of genes of an h5ad (the QC'd counts) to ``output``: the t sweep's cap."""
    import logging

    import anndata as ad

    from ._files import atomic_path

    adata = ad.read_h5ad(input, backed="r")
    n_genes = int(adata.n_vars)
    adata.file.close()
    with atomic_path(output) as tmp:
        tmp.write_text(f"{n_genes}\n")
    logging.getLogger("scdsec").info("%s: %d genes after QC", input, n_genes)
    return n_genes
