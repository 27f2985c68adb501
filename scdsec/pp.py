"""Preprocessing on an AnnData in memory, scanpy style: ``scdsec.pp.prepare(adata)``."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad

from .graph import build_knn_graph
from .preprocessing import normalize, qc_filter

__all__ = ["build_knn_graph", "normalize", "prepare", "qc_filter"]


def prepare(
    adata: ad.AnnData,
    *,
    batch_key: str | None = None,
    qc: Mapping | None = None,
    normalize_params: Mapping | None = None,
    graph: Mapping | None = None,
) -> ad.AnnData:
    """Run QC, normalisation and the kNN graph on raw counts; return the prepared copy.

    Parameters
    ----------
    adata
        Raw counts, cells × genes.
    batch_key
        The ``obs`` column of each cell's batch (sample, donor, plate), or None: the PCs
        are then corrected with Harmony into ``obsm['X_pca_harmony']``, on which the graph is
        built (``graph.batch_correction``), and the highly variable genes ranked per batch
        if ``normalize_params`` says ``hvg_per_batch=True``; pass the same key to
        :func:`scdsec.tl.cluster`.
    qc, normalize_params, graph
        Keyword arguments of :func:`qc_filter`, :func:`normalize` and
        :func:`build_knn_graph` (the ``qc``, ``normalize`` and ``graph`` sections of
        ``config.yaml``); the defaults are the paper's.

    Raises
    ------
    InputError
        What the three steps raise (a ``batch_key`` column that is missing, has missing
        values or one batch: :func:`scdsec._checks.check_batch_key`).
    """
    batch = {} if batch_key is None else {"batch_key": batch_key}
    adata = qc_filter(adata, **dict(qc or {}))
    adata = normalize(adata, **{**dict(normalize_params or {}), **batch})
    return build_knn_graph(adata, **{**dict(graph or {}), **batch})
