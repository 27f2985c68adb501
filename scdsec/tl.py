"""Clustering on a prepared AnnData in memory, scanpy style: ``scdsec.tl.cluster(adata)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import anndata as ad

from .clustering import estimate_n_clusters
from .model import SCDSEC, Params

__all__ = ["cluster", "estimate_n_clusters"]


def cluster(
    adata: ad.AnnData,
    n_clusters: int | Literal["auto"] = "auto",
    *,
    params: Params | Mapping | str | None = None,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    deterministic: bool = False,
    key_added: str = "scdsec",
) -> SCDSEC:
    """Train scDSEC on a prepared AnnData and store its results in it.

    Parameters
    ----------
    adata
        Output of :func:`scdsec.pp.prepare` (or of the workflow's ``graph`` step).
    n_clusters
        Number of clusters, or ``"auto"`` to estimate it (:func:`estimate_n_clusters`).
    params
        :class:`scdsec.model.Params`, a preset name, or a mapping
        ``{"preset": ..., "model": {...}, "train": {...}}`` as in ``config.yaml``.
    seed
        Seed of the weights, the sampled non-edges and k-means.
    device, threads, deterministic
        Where and how reproducibly to train (see :mod:`scdsec.settings`).
    key_added
        ``obs[key_added]`` gets the labels, ``obsm["X_" + key_added]`` the embedding,
        ``obsm[key_added + "_q"]`` the soft assignment, ``uns[key_added]`` the record.

    Returns
    -------
    The trained model (for ``save``, ``get_latent_representation``, ``history``, …).
    """
    estimated = n_clusters == "auto"
    k = estimate_n_clusters(adata, seed=seed) if estimated else int(n_clusters)
    if isinstance(params, Mapping):
        params = Params.from_dict(params)
    model = SCDSEC(adata, k, params, seed=seed)
    model.train(device=device, threads=threads, deterministic=deterministic)
    model.annotate(adata, key_added=key_added)
    adata.uns[key_added]["n_clusters_estimated"] = estimated
    return model
