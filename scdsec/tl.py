"""Clustering on a prepared AnnData in memory, scanpy style: ``scdsec.tl.cluster(adata)``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from .clustering import estimate_n_clusters
from .consensus import consensus_labels, ensemble_seeds
from .model import SCDSEC, Params
from .provenance import provenance
from .settings import logger

__all__ = ["cluster", "consensus", "estimate_n_clusters"]


def cluster(
    adata: ad.AnnData,
    n_clusters: int | Literal["auto"] = "auto",
    *,
    params: Params | Mapping | str | None = None,
    seed: int = 0,
    batch_key: str | None = None,
    n_runs: int = 1,
    device: str = "auto",
    threads: int | None = None,
    deterministic: bool | str = "auto",
    key_added: str = "scdsec",
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
) -> SCDSEC:
    """Train scDSEC on a prepared AnnData and store its results in it.

    Parameters
    ----------
    adata
        Output of :func:`scdsec.pp.prepare` (or of the workflow's ``graph`` step).
    n_clusters
        Number of clusters, or ``"auto"``: the Leiden estimate (:func:`estimate_n_clusters`),
        refined by the merges of joint training when ``train.overcluster`` > 1 (see
        :class:`scdsec.model.SCDSEC`).
    params
        :class:`scdsec.model.Params`, a preset name, or a mapping
        ``{"preset": ..., "model": {...}, "train": {...}}`` as in ``config.yaml``.
    seed
        Seed of the weights, the sampled non-edges and k-means.
    batch_key
        An ``adata.obs`` column giving each cell's batch (sample, donor, platform …). With
        ``model.batch_covariate`` (default true) the expression decoder is conditioned on the
        batch, as scVI's is, so the embedding need not encode it (see
        :class:`scdsec.model.SCDSEC`). The graph and the PCA the centres start from are the
        ones ``adata`` holds (a corrected PCA when the graph step built the graph on one).
        Recorded in ``uns[key_added]["batch_key"]`` (None without one). Default: no batch.
        A key other than the one the graph was corrected for
        (``uns['scdsec_graph']['batch_key']``, from :func:`scdsec.pp.prepare`) is logged as
        a warning, so is none when the graph was corrected.
    n_runs
        Size of the ensemble. 1 (default): one model. 3 or more: ``n_runs`` models with the
        seeds :func:`scdsec.consensus.ensemble_seeds` ``(seed, n_runs)``, each stored under
        ``key_added + "_run" + r``, and their :func:`consensus` under ``key_added`` (costs
        ``n_runs`` trainings; 2 is refused, as two runs cannot outvote each other).
    device, threads, deterministic
        Where and how reproducibly to train (see :mod:`scdsec.settings`).
    checkpoint_dir, checkpoint_every
        Save each run's training state in ``checkpoint_dir/seed<run seed>.pt`` every
        ``checkpoint_every`` epochs, and resume a killed run from it (see
        :meth:`scdsec.model.SCDSEC.train`). None: no checkpoints.
    key_added
        ``obs[key_added]`` gets the labels, ``obsm["X_" + key_added]`` the embedding,
        ``obsm[key_added + "_q"]`` the soft assignment, ``uns[key_added]`` the record
        (parameters, seed, ``batch_key``, …).
        With an ensemble, ``obs[key_added]`` holds the consensus and
        ``obs[key_added + "_agreement"]`` each cell's agreement, ``obsm["X_" + key_added]`` the
        first run's embedding, and no soft assignment under ``key_added``.

    Returns
    -------
    The trained model (for ``save``, ``get_latent_representation``, ``history``, …); with an
    ensemble, the first run's.

    Results stored under ``key_added`` by an earlier call (of either kind) are removed first.

    Raises
    ------
    ValueError
        ``n_runs`` not an integer of 1 or at least 3.
    scdsec.InputError
        ``adata`` not prepared, ``n_clusters`` outside 2 … ``n_obs``, bad ``params``, or
        ``obs[batch_key]`` missing, with missing values or with fewer than 2 batches.
    RuntimeError
        ``device="cuda"`` without a visible CUDA device.
    """
    seeds = ensemble_seeds(seed, n_runs)
    _warn_on_another_batch_key(adata, batch_key)
    if n_runs == 2:
        raise ValueError("n_runs=2: two runs cannot outvote each other; use 1 or at least 3")
    estimated = n_clusters == "auto"
    if not estimated:
        logger.info("K = %d (given)", int(n_clusters))
    if isinstance(params, Mapping):
        params = Params.from_dict(params)
    _remove_results(adata, key_added)
    first = None
    found: list[int] = []
    for r, run_seed in enumerate(seeds):
        model = SCDSEC(
            adata,
            "auto" if estimated else int(n_clusters),
            params,
            seed=run_seed,
            batch_key=batch_key,
        )
        model.train(
            device=device,
            threads=threads,
            deterministic=deterministic,
            checkpoint=None
            if checkpoint_dir is None
            else Path(checkpoint_dir) / f"seed{run_seed}.pt",
            checkpoint_every=checkpoint_every,
        )
        model.annotate(adata, key_added=key_added if n_runs == 1 else f"{key_added}_run{r}")
        if first is None:
            first = model
        found.append(model.n_clusters)
    k = max(set(found), key=found.count)  # under auto the runs may find different K
    if n_runs == 1:
        adata.uns[key_added]["n_clusters_estimated"] = estimated
        return first
    runs = [f"{key_added}_run{r}" for r in range(n_runs)]
    adata.obsm[f"X_{key_added}"] = adata.obsm[f"X_{runs[0]}"]  # for plots: the first run's
    consensus(adata, runs, k, seed=seed, key_added=key_added)
    # the same for every run
    how = ("params", "batch_key", "device", "threads", "deterministic")
    adata.uns[key_added].update(
        {
            "seed": seed,
            "n_runs": n_runs,
            "run_seeds": seeds,
            **{name: adata.uns[runs[0]][name] for name in how},
            "n_clusters_estimated": estimated,
            "provenance": provenance(),
        }
    )
    if batch_key is not None:
        adata.uns[key_added]["batch_categories"] = adata.uns[runs[0]]["batch_categories"]
    return first


def _warn_on_another_batch_key(adata: ad.AnnData, batch_key: str | None) -> None:
    """Warn when ``batch_key`` differs from the key the graph was built with: a graph
    corrected for one batch column and a decoder conditioned on another (or on none) is
    seldom what was meant."""
    graph = adata.uns.get("scdsec_graph")
    prepared = graph.get("batch_key") if isinstance(graph, Mapping) else None
    if prepared is not None and batch_key != prepared:
        logger.warning(
            "the graph was built with batch_key %r (scdsec.pp.prepare) but cluster has "
            "batch_key=%r: pass batch_key=%r to condition the decoder on the same batches",
            prepared,
            batch_key,
            prepared,
        )


def _remove_results(adata: ad.AnnData, key: str) -> None:
    """Drop what :func:`cluster` stores under ``key`` (one model's or an ensemble's)."""
    runs = re.compile(rf"{re.escape(key)}_run\d+")
    for mapping in (adata.obs, adata.obsm, adata.uns):
        names = [
            name
            for name in list(mapping.keys())
            if name in (key, f"{key}_agreement", f"X_{key}", f"{key}_q")
            or runs.fullmatch(name.removeprefix("X_").removesuffix("_q"))
        ]
        for name in names:
            del mapping[name]


def consensus(
    adata: ad.AnnData,
    keys: Sequence[str],
    n_clusters: int,
    *,
    seed: int = 0,
    key_added: str = "consensus",
) -> None:
    """The consensus of several clusterings stored in ``adata.obs`` (sparse; no cells × cells).

    Parameters
    ----------
    adata
        Cells with one label column per clustering.
    keys
        The ``obs`` columns to combine (e.g. the labels of several seeds, or of other methods).
    n_clusters
        Number of consensus clusters.
    seed
        Seed of the k-means on the membership matrix (:func:`scdsec.consensus.consensus_labels`,
        Topchy et al. 2005).
    key_added
        ``obs[key_added]`` gets the labels (categorical "0" … "K−1", "0" the largest),
        ``obs[key_added + "_agreement"]`` the fraction of clusterings that agree with each cell's
        label, and ``uns[key_added]`` the keys, seed and ``n_clusters``.

    Raises
    ------
    TypeError
        ``keys`` given as one string.
    KeyError
        A key that is not a column of ``adata.obs``.
    ValueError
        No keys, or ``n_clusters`` not an integer in 1 … ``n_obs``.
    """
    if isinstance(keys, str):
        raise TypeError(f"keys must be a list of obs columns, got the string {keys!r}")
    missing = [key for key in keys if key not in adata.obs]
    if missing:
        raise KeyError(f"not in adata.obs: {missing}")
    labels, agreement = consensus_labels(
        [adata.obs[key].astype(str).to_numpy() for key in keys], n_clusters, seed=seed
    )
    categories = [str(c) for c in range(n_clusters)]
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=categories)
    adata.obs[f"{key_added}_agreement"] = agreement.astype(np.float32)
    adata.uns[key_added] = {
        "consensus_of": list(keys),
        "consensus_seed": seed,
        "n_clusters": n_clusters,
    }
