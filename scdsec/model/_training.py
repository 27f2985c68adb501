"""The training loop of scDSEC (docs/method.md §5–6): pretraining, the centres' start, joint
training.

One loop for full-batch and mini-batch training: it reads its batches from a
:class:`~scdsec.model._data.CellBatches`, which holds either one batch of every cell or
Cluster-GCN's shuffled graph parts. Z and Q of all cells (for the k-means start and the target
distribution P) come from no-grad passes over the whole graph. The model class
(:class:`scdsec.model.SCDSEC`) owns the AnnData, inference and checkpoints; this module owns
the optimisation.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from tqdm import tqdm

from .. import settings
from .._errors import InputError
from ..graph import pca as principal_components
from . import _losses
from ._checkpoint import TrainingCheckpoint
from ._data import DEFAULT_REP, GRAPH_KEY, Batch, CellBatches
from ._graph import sample_non_edges
from ._merge import DISTINCT_BELOW, ClusterStatistics, merge_clusters
from ._modules import SCDSECModule
from ._params import TrainParams

# train.pretrain_epochs / epochs "auto": optimiser steps a stage takes (50 full-batch epochs,
# the schedule the development datasets were tuned on), in at least this many epochs.
STEP_BUDGET = 50
MIN_AUTO_EPOCHS = 5
# k-means with kmeans_n_init restarts up to this many cells; sklearn's MiniBatchKMeans above.
KMEANS_MAX_CELLS = 100_000


def fit(
    module: SCDSECModule,
    batches: CellBatches,
    tp: TrainParams,
    *,
    seed: int,
    generator: torch.Generator,
    n_clusters: int | str,
    checkpoint: TrainingCheckpoint | None = None,
) -> list[dict[str, Any]]:
    """Pretrain, start the centres, train jointly; return one history row per epoch.

    Parameters
    ----------
    module
        The network, already on the batches' device.
    batches
        The cells and how they are batched.
    tp
        Schedule and loss weights.
    seed
        Seeds k-means.
    n_clusters
        Clusters wanted, K (with ``tp.overcluster`` > 1 the joint stage starts from more
        centres and merges back to K); ``"auto"``: the module's number of centres is an
        estimate, and merges stop where the clusters left are distinct
        (``tp.merge_threshold``), so the number of centres after training is the K found.
    generator
        CPU generator for non-edge sampling (and, through ``batches``, the batch order).
    checkpoint
        Where to save the state every few epochs; a saved state of the same run is resumed
        (see :mod:`scdsec.model._checkpoint`), and removed once training ends.

    Returns
    -------
    History rows: ``stage``, ``epoch``, the loss terms (means over the epoch's batches, weighted
    by their cells), ``labels_changed`` and ``seconds`` since the start.
    """
    resumed = checkpoint.load() if checkpoint is not None else None
    auto = n_clusters == "auto"  # then the module was built with the estimate's centres
    wanted = module.assignment.centers.shape[0] if auto else int(n_clusters)
    if resumed is not None:  # the centres may have been more than K when it was saved
        module.assignment.set_centers(resumed["module"]["assignment.centers"])
        module.load_state_dict(resumed["module"])
        generator.set_state(resumed["generator"])
    rows = list(resumed["rows"]) if resumed is not None else []
    start = time.perf_counter() - (rows[-1]["seconds"] if rows else 0.0)
    loop = _Loop(module, batches, tp, generator, start, checkpoint, wanted, auto)
    if resumed is None or resumed["stage"] == "pretrain":
        rows = loop.pretrain(rows, resumed)
        resumed = None
    rows = loop.train_jointly(rows, seed, resumed)
    number_clusters_by_size(module, batches)
    module.eval()
    if checkpoint is not None:
        checkpoint.remove()
    return rows


def _log_stage(stage: str, first: int, epochs: int, n_batches: int) -> None:
    if first == 0:
        steps = f" ({n_batches} batches an epoch)" if n_batches > 1 else ""
        settings.logger.info("scDSEC: %s for %d epochs%s", stage, epochs, steps)
    else:
        settings.logger.info("scDSEC: %s resumes after epoch %d of %d", stage, first, epochs)


class _Loop:
    """The two stages of :func:`fit` with what they share (and save in checkpoints)."""

    def __init__(
        self,
        module: SCDSECModule,
        batches: CellBatches,
        tp: TrainParams,
        generator: torch.Generator,
        start: float,
        checkpoint: TrainingCheckpoint | None,
        n_clusters: int,
        auto: bool,
    ) -> None:
        self.module, self.batches, self.tp = module, batches, tp
        self.generator, self.start, self.checkpoint = generator, start, checkpoint
        self.n_clusters, self.auto = n_clusters, auto  # K, or the estimate under auto
        self.pretrain_epochs = resolve_epochs(tp.pretrain_epochs, batches.n_batches)
        self.epochs = resolve_epochs(tp.epochs, batches.n_batches)

    def pretrain(
        self, rows: list[dict[str, Any]], resumed: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Stage 1: the network without the clustering term."""
        module, tp = self.module, self.tp
        network = [*module.encoder.parameters(), *module.decoder.parameters()]
        optimizer = torch.optim.Adam(network, lr=tp.pretrain_lr)
        first = 0
        if resumed is not None:
            optimizer.load_state_dict(resumed["optimizer"])
            first = resumed["epoch"]
        _log_stage("pretraining", first, self.pretrain_epochs, self.batches.n_batches)
        bar = tqdm(
            range(first, self.pretrain_epochs),
            desc="scDSEC pretrain",
            initial=first,
            total=self.pretrain_epochs,
            disable=not settings.progress_enabled(),
        )
        for epoch in bar:
            terms = _epoch(module, self.batches, optimizer, tp, self.generator, target=None)
            bar.set_postfix(loss=f"{terms['total']:.4f}")
            rows.append({"stage": "pretrain", "epoch": epoch + 1, **terms, **self._clock()})
            self._save("pretrain", epoch + 1, optimizer, rows)
        return rows

    def train_jointly(
        self, rows: list[dict[str, Any]], seed: int, resumed: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Stages 2–3: the k-means start of the centres, then the joint objective."""
        module, batches, tp = self.module, self.batches, self.tp
        optimizer = torch.optim.Adam(module.parameters(), lr=tp.lr)
        n_start = starting_centers(self.n_clusters, tp.overcluster, batches.data.n_cells)
        if resumed is None:
            labels, target, first = _init_centers(module, batches, tp, seed, n_start), None, 0
        else:  # the centres came back with the module's state
            optimizer.load_state_dict(resumed["optimizer"])
            labels = resumed["labels"].numpy()
            target = resumed["target"]
            target = None if target is None else target.to(batches.device)
            first = resumed["epoch"]
        _log_stage("joint training", first, self.epochs, batches.n_batches)
        bar = tqdm(
            range(first, self.epochs),
            desc="scDSEC cluster",
            initial=first,
            total=self.epochs,
            disable=not settings.progress_enabled(),
        )
        merge_at = merge_epochs(tp, self.epochs, n_start > self.n_clusters)
        for epoch in bar:
            changed = float("nan")
            merged = epoch in merge_at
            if merged:  # an equal share of the surplus each round, K after the last
                left = len(merge_at) - merge_at.index(epoch) - 1
                count = self.n_clusters + (n_start - self.n_clusters) * left // len(merge_at)
                labels = self._merge(optimizer, labels, count)
            if merged or epoch % tp.update_interval == 0:
                q = soft_assignment(module, batches.all_cells())
                new_labels = q.argmax(dim=1).cpu().numpy()
                changed = float(np.mean(new_labels != labels))
                labels = new_labels
                if epoch > max(merge_at, default=0) and changed < tp.tol:
                    settings.logger.info(
                        "scDSEC: %.4f of the labels changed (< tol %g): stopping after %d epochs",
                        changed,
                        tp.tol,
                        epoch,
                    )
                    break
                target = _losses.target_distribution(q, tp.target_frequency_exponent)
            terms = _epoch(module, batches, optimizer, tp, self.generator, target=target)
            bar.set_postfix(loss=f"{terms['total']:.4f}")
            rows.append(
                {
                    "stage": "cluster",
                    "epoch": epoch + 1,
                    **terms,
                    "labels_changed": changed,
                    **self._clock(),
                }
            )
            extra = {"labels": torch.as_tensor(labels), "target": target}
            self._save("cluster", epoch + 1, optimizer, rows, **extra)
        left = module.assignment.centers.shape[0]
        unmerged = self.auto and not merge_at and n_start > self.n_clusters  # no joint epoch
        if unmerged or (left > self.n_clusters and not self.auto):  # or stopped early
            self._merge(optimizer, labels, self.n_clusters)
        return rows

    def _merge(
        self, optimizer: torch.optim.Optimizer, labels: np.ndarray, count: int
    ) -> np.ndarray:
        """A round of merges down to ``count`` clusters, or under ``auto`` while pairs are
        alike (:func:`merge_round`)."""
        if self.auto:
            threshold = self.tp.merge_threshold
            if threshold is None:
                threshold = DISTINCT_BELOW[self.tp.merge_criterion]
            args = {"n_clusters": 2, "min_similarity": float(threshold)}
        else:
            args = {"n_clusters": count}
        return merge_round(self.module, self.batches, self.tp, optimizer, labels, **args)

    def _clock(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.start}

    def _save(
        self,
        stage: str,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        rows: list[dict[str, Any]],
        **extra: Any,
    ) -> None:
        if self.checkpoint is None or not self.checkpoint.due(epoch):
            return
        self.checkpoint.save(
            {
                "stage": stage,
                "epoch": epoch,
                "module": _to_cpu(self.module.state_dict()),
                "optimizer": _to_cpu(optimizer.state_dict()),
                "generator": self.generator.get_state(),
                "rows": rows,
                **_to_cpu(extra),
            }
        )


def _to_cpu(value: Any) -> Any:
    """A state dict with every tensor on the CPU (checkpoints load on any device)."""
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def number_clusters_by_size(module: SCDSECModule, batches: CellBatches) -> None:
    """Reorder the centres so that cluster 0 is the largest (canonical cluster ids).

    K-means numbers its clusters arbitrarily, so two runs that find the same partition could
    carry different ids. After this, the clusters (argmax Q) are numbered by decreasing size,
    ties by the first cell (in AnnData order) each holds; empty clusters come last. Q's columns
    and the centres move together, so nothing but the numbering changes.
    """
    labels = soft_assignment(module, batches.all_cells()).argmax(dim=1).cpu().numpy()
    n_clusters = module.assignment.centers.shape[0]
    sizes = np.bincount(labels, minlength=n_clusters)
    first_cell = np.full(n_clusters, len(labels))
    np.minimum.at(first_cell, labels, np.arange(len(labels)))
    order = np.lexsort((first_cell, -sizes))  # the last key sorts first
    with torch.no_grad():
        centers = module.assignment.centers
        centers.copy_(centers[torch.as_tensor(order, device=centers.device)])


def _epoch(
    module: SCDSECModule,
    batches: CellBatches,
    optimizer: torch.optim.Optimizer,
    tp: TrainParams,
    generator: torch.Generator,
    target: torch.Tensor | None,
) -> dict[str, float]:
    """One pass over every cell, one step per batch; the terms' means weighted by cells."""
    if batches.is_full_batch:
        batch = next(batches.epoch())
        return _step(module, batch, optimizer, tp, generator, target)
    sums: dict[str, float] = {}
    n = 0
    for batch in batches.epoch():
        p = None if target is None else target[batch.index]
        terms = _step(module, batch, optimizer, tp, generator, p)
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value * len(batch)
        n += len(batch)
    return {name: value / n for name, value in sums.items()}


def _step(
    module: SCDSECModule,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    tp: TrainParams,
    generator: torch.Generator,
    target: torch.Tensor | None,
) -> dict[str, float]:
    """One optimisation step on ``batch``; ``target`` is P for its cells (None: no KL)."""
    module.train()
    x = batch.x
    if target is None and tp.mask_fraction > 0:  # masked-gene pretraining: hide, then predict
        hidden = torch.rand(x.shape, generator=generator) < tp.mask_fraction
        x = x.masked_fill(hidden.to(x.device), 0.0)
    out = module(x, batch.adj, batch.size_factors, batch.batch)  # the batch: decoder only
    non_edges = sample_non_edges(batch.edge_keys, len(batch), len(batch.edges), generator)
    terms = {
        "zinb": _losses.zinb_nll(batch.counts, *out.decoded[1:]),
        "rec": _losses.reconstruction_mse(out.decoded.reconstruction, batch.x),
        "graph": _losses.graph_bce(out.z, batch.edges, non_edges.to(batch.x.device)),
    }
    weights = {"zinb": tp.zinb_weight, "rec": tp.rec_weight, "graph": tp.graph_weight}
    if tp.contrastive_weight > 0 and len(batch.edges) >= 2:
        chosen = torch.randint(
            len(batch.edges), (min(tp.contrastive_pairs, len(batch.edges)),), generator=generator
        )
        pairs = batch.edges[chosen.to(batch.edges.device)]
        terms["contrastive"] = _losses.neighbour_contrastive(out.z, pairs)
        weights["contrastive"] = tp.contrastive_weight
    if target is not None:
        terms["kl"] = _losses.kl_divergence(target, out.q)
        weights["kl"] = tp.kl_weight
    weighted = [weights[name] * term for name, term in terms.items() if weights[name] > 0]
    total = torch.stack(weighted).sum() if weighted else torch.zeros(())
    if total.requires_grad:
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    return {
        **{name: float(term.detach()) for name, term in terms.items()},
        "total": float(total.detach()),
    }


def embed(module: SCDSECModule, batch: Batch) -> torch.Tensor:
    """Z of the batch's cells on its graph, without gradients."""
    module.eval()
    with torch.no_grad():
        return module.encoder(batch.x, batch.adj)


def soft_assignment(module: SCDSECModule, batch: Batch) -> torch.Tensor:
    """Q of the batch's cells on its graph, without gradients."""
    z = embed(module, batch)
    with torch.no_grad():
        return module.assignment(z)


def _init_centers(
    module: SCDSECModule, batches: CellBatches, tp: TrainParams, seed: int, n_clusters: int
) -> np.ndarray:
    """Set ``n_clusters`` centres by k-means (see ``TrainParams.center_init``); return its
    labels."""
    everyone = batches.all_cells()
    z = embed(module, everyone).cpu().numpy()
    if len(z) <= KMEANS_MAX_CELLS:
        kmeans = KMeans(n_clusters, n_init=tp.kmeans_n_init, random_state=seed)
    else:
        kmeans = MiniBatchKMeans(
            n_clusters, n_init=tp.kmeans_n_init, random_state=seed, batch_size=4096
        )
        settings.logger.info("scDSEC: %d cells: mini-batch k-means for the centres", len(z))
    if tp.center_init == "embedding":
        labels = kmeans.fit_predict(z)
        centers = kmeans.cluster_centers_
    else:
        data = batches.data
        if data.pca is None and data.pca_key != DEFAULT_REP:  # a corrected PCA is not redone
            raise InputError(
                f"adata.obsm[{data.pca_key!r}] is missing: the graph was built on it "
                f"(adata.uns[{GRAPH_KEY!r}]['use_rep']), and center_init "
                f"{tp.center_init!r} reads it"
            )
        if data.pca is None:  # as the graph step computes it
            settings.logger.info("scDSEC: adata.obsm['X_pca'] is absent: PCA of adata.X")
            data.pca = principal_components(data.x)
        space = np.asarray(data.pca, dtype=np.float64)
        if tp.center_init == "both":
            space = joint_space(space, z, tp.center_init_pca_share)
        labels = kmeans.fit_predict(space)
        sums = np.zeros((n_clusters, z.shape[1]))
        np.add.at(sums, labels, z)
        centers = sums / np.maximum(np.bincount(labels, minlength=n_clusters), 1)[:, None]
    centers = torch.as_tensor(centers, dtype=torch.float32)
    module.assignment.set_centers(centers.to(everyone.x.device))
    return labels


def joint_space(pca: np.ndarray, z: np.ndarray, pca_share: float = 0.5) -> np.ndarray:
    """The space of ``center_init: both``: the PCA coordinates (N × p) and Z (N × latent) side
    by side, their total variances in the ratio ``pca_share : 1 − pca_share``."""
    weights = np.sqrt([pca_share, 1.0 - pca_share])
    weights /= weights.max()  # k-means is scale-free; 0.5 weighs both blocks 1
    blocks = zip(weights, (pca, z), strict=True)
    return np.hstack([w * b / np.sqrt(b.var(axis=0).sum()) for w, b in blocks])


def starting_centers(n_clusters: int, overcluster: float, n_cells: int) -> int:
    """Centres k-means starts the joint stage with: ``round(overcluster · K)``, at most one
    per cell."""
    return int(min(max(n_clusters, round(overcluster * n_clusters)), n_cells))


def resolve_epochs(epochs: int | str, n_batches: int) -> int:
    """Epochs of a stage for ``epochs`` (an integer, or ``"auto"``) and ``n_batches`` batches
    an epoch: ``"auto"`` is :data:`STEP_BUDGET` optimiser steps, ⌈budget / n_batches⌉ epochs,
    at least :data:`MIN_AUTO_EPOCHS` (:class:`TrainParams` ``pretrain_epochs`` says why)."""
    if epochs != "auto":
        return int(epochs)
    return max(MIN_AUTO_EPOCHS, math.ceil(STEP_BUDGET / max(1, n_batches)))


def merge_epochs(tp: TrainParams, epochs: int, merging: bool) -> list[int]:
    """Joint epochs (0-based, before that epoch's step) that begin with a round of merges.

    Every ``merge_interval`` epochs, ``merge_rounds`` times; when the joint stage (``epochs``
    long) is shorter, the rounds are spread evenly over it (a merge left after the last epoch
    happens then).
    """
    if not merging or epochs == 0:
        return []
    interval = tp.merge_interval
    if tp.merge_rounds * interval >= epochs:
        interval = epochs / (tp.merge_rounds + 1)
    return sorted({max(1, round(interval * r)) for r in range(1, tp.merge_rounds + 1)})


def merge_round(
    module: SCDSECModule,
    batches: CellBatches,
    tp: TrainParams,
    optimizer: torch.optim.Optimizer,
    labels: np.ndarray,
    *,
    n_clusters: int | None,
    min_similarity: float | None = None,
) -> np.ndarray:
    """Merge the current clusters (argmax Q over every cell) down to ``n_clusters``.

    The clusters' sums come from one no-grad pass over all cells (Z) and the whole kNN graph;
    a merged cluster's centre becomes the mean Z of its cells, the others keep theirs. Clusters
    left without cells are dropped too, unless that would leave fewer than ``n_clusters``.
    The optimiser's state for the centres is reset (their number changed). Returns the
    previous labels in the new cluster ids (to count how many change at the next update).
    """
    everyone = batches.all_cells()
    centers = module.assignment.centers
    z = embed(module, everyone)
    with torch.no_grad():
        current = module.assignment(z).argmax(dim=1).cpu().numpy()
    n_start = centers.shape[0]
    stats = ClusterStatistics.from_labels(current, z.cpu().numpy(), batches.data.adj, n_start)
    empty = np.flatnonzero(~stats.active)
    result = merge_clusters(
        stats, tp.merge_criterion, n_clusters=n_clusters, min_similarity=min_similarity
    )
    joined = {keep for keep, _, _ in result.merges}
    old = centers.detach().cpu().numpy().astype(np.float64)
    means = stats.centers()
    kept = np.flatnonzero(stats.active)
    new_centers = [means[c] if c in joined else old[c] for c in kept]
    mapping = result.mapping.copy()
    short = 0 if n_clusters is None else max(0, n_clusters - len(kept))
    for c in empty[:short]:  # keep empty clusters rather than fall below K
        mapping[c] = len(new_centers)
        new_centers.append(old[c])
    module.assignment.set_centers(torch.as_tensor(np.array(new_centers), dtype=torch.float32))
    optimizer.state.pop(centers, None)
    settings.logger.info(
        "scDSEC: merged %d clusters into %d (%s: %s)",
        n_start,
        len(new_centers),
        tp.merge_criterion,
        ", ".join(f"{gone}→{keep} {score:.2f}" for keep, gone, score in result.merges) or "none",
    )
    previous = mapping[np.asarray(labels)]
    return np.where(previous < 0, 0, previous)
