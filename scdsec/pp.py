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
    qc: Mapping | None = None,
    normalize_params: Mapping | None = None,
    graph: Mapping | None = None,
) -> ad.AnnData:
    """Run QC, normalisation and the kNN graph on raw counts; return the prepared copy.

    Each mapping holds keyword arguments of :func:`qc_filter`, :func:`normalize` and
    :func:`build_knn_graph` (the ``qc``, ``normalize`` and ``graph`` sections of
    ``config.yaml``); the defaults are the paper's. For cells from several batches, name the
    ``obs`` column in both later steps: ``normalize_params={"batch_key": "donor"}`` ranks
    the highly variable genes per batch, ``graph={"batch_key": "donor"}`` corrects the PCs
    with Harmony (``obsm['X_pca_harmony']``) and builds the graph on them.
    """
    adata = qc_filter(adata, **dict(qc or {}))
    adata = normalize(adata, **dict(normalize_params or {}))
    return build_knn_graph(adata, **dict(graph or {}))
