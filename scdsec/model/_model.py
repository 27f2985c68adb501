"""The scDSEC model class: reads the AnnData, trains, infers, writes results and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans
from tqdm import tqdm

from .. import settings
from .._errors import InputError
from ..graph import pca as principal_components
from ..provenance import provenance
from . import _losses
from ._graph import normalize_adjacency, pair_keys, sample_non_edges, to_torch_sparse, upper_edges
from ._modules import SCDSECModule
from ._params import ModelParams, Params, TrainParams, get_preset

PREPROCESS_KEY = "scdsec_preprocess"
PREPROCESS_FIELDS = ("genes", "mean", "std", "median_library_size", "n_top_genes", "clip")
STATE_FILE = "model.pt"
META_FILE = "model.json"
HISTORY_COLUMNS = (
    "stage",
    "epoch",
    "zinb",
    "rec",
    "graph",
    "kl",
    "total",
    "labels_changed",
    "seconds",
)


@dataclass
class _CellData:
    """What the model reads from an AnnData (the input contract of the preprocessing steps)."""

    x: np.ndarray  # network input, N × t float32
    adj: sp.csr_matrix  # binary kNN adjacency A, no self loops
    counts: sp.csr_matrix | None  # raw counts of the t genes (needed for training only)
    size_factors: np.ndarray | None  # per-cell size factors (needed for training only)
    pca: np.ndarray | None  # the graph step's PCA coordinates (center_init "pca" or "both")


@dataclass
class _Batch:
    """The cells one training step sees, with the graph induced on them.

    Full-batch training uses a single batch of all cells; a mini-batch of cells with its induced
    subgraph has the same form, so the step does not change when mini-batches are added.
    """

    index: torch.Tensor  # positions of the cells in the AnnData
    x: torch.Tensor  # network input (B × t)
    counts: torch.Tensor  # raw counts (B × t)
    size_factors: torch.Tensor  # (B,)
    adj: torch.Tensor  # normalised adjacency Â of the induced subgraph, sparse B × B
    edges: torch.Tensor  # (E, 2) edges i < j of the induced subgraph, local indices
    edge_keys: torch.Tensor  # sorted pair keys of ``edges`` on the CPU, for non-edge sampling


class SCDSEC:
    """Deep structure-enhanced cell clustering (scDSEC) of one AnnData.

    Parameters
    ----------
    adata
        Cells × highly variable genes, as the preprocessing and graph steps leave it:
        ``X`` the scaled network input, ``layers["counts"]`` the raw counts,
        ``obs["size_factor"]``, ``obsp["knn"]`` the binary kNN graph and
        ``uns["scdsec_preprocess"]`` what the preparation did (stored in checkpoints).
    n_clusters
        Number of clusters ``K``.
    params
        Architecture (:class:`ModelParams`), a full :class:`Params` (its training part becomes
        the default of :meth:`train`) or a preset name from :data:`PRESETS`. Default: the
        ``"default"`` preset.
    seed
        Seeds the weight initialisation, the non-edge sampling and k-means; the same seed on
        the CPU gives the same labels.
    **model_kwargs
        Single :class:`ModelParams` fields overriding ``params``, e.g. ``alpha=0.3``.

    Examples
    --------
    >>> model = SCDSEC(adata, n_clusters=8, seed=0)
    >>> model.train(pretrain_epochs=100)
    >>> model.annotate()  # adata.obs["scdsec"], adata.obsm["X_scdsec"], ...
    """

    def __init__(
        self,
        adata: ad.AnnData,
        n_clusters: int,
        params: ModelParams | Params | str | None = None,
        *,
        seed: int = 0,
        **model_kwargs: Any,
    ) -> None:
        resolved = _resolve_params(params, model_kwargs)
        preprocess = adata.uns.get(PREPROCESS_KEY)
        if not isinstance(preprocess, dict):
            raise InputError(
                f"adata.uns[{PREPROCESS_KEY!r}] is missing: prepare the cells with scdsec's "
                "normalize step first"
            )
        missing = [key for key in PREPROCESS_FIELDS if key not in preprocess]
        if missing:
            raise InputError(f"adata.uns[{PREPROCESS_KEY!r}] lacks {missing}")
        genes = [str(g) for g in adata.var_names]
        if [str(g) for g in preprocess["genes"]] != genes:
            raise InputError(
                f"adata.uns[{PREPROCESS_KEY!r}]['genes'] differs from adata.var_names: the "
                "AnnData was subset or reordered after preprocessing"
            )
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
            raise InputError(f"n_clusters must be an integer, got {n_clusters!r}")
        if not 2 <= n_clusters <= adata.n_obs:
            raise InputError(
                f"n_clusters must lie between 2 and the number of cells ({adata.n_obs}), "
                f"got {n_clusters}"
            )
        data = _read_cells(adata, genes=None, training=True)
        self._setup(int(n_clusters), resolved, seed, genes, _jsonable(preprocess))
        self.adata: ad.AnnData | None = adata
        self._data: _CellData | None = data

    def _setup(
        self, n_clusters: int, params: Params, seed: int, genes: list[str], preprocess: dict
    ) -> None:
        self.n_clusters = n_clusters
        self.params = params
        self._train_defaults = params.train
        self.seed = int(seed)
        self.genes = genes
        self.preprocess = preprocess
        settings.seed_everything(self.seed)
        self.module = SCDSECModule(len(genes), n_clusters, **dataclasses.asdict(params.model))
        self.is_trained = False
        self._history = pd.DataFrame(columns=list(HISTORY_COLUMNS))
        self._run: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = "trained" if self.is_trained else "not trained"
        return (
            f"SCDSEC({len(self.genes)} genes, {self.n_clusters} clusters, seed {self.seed}, "
            f"{state}; {self.params.model})"
        )

    @property
    def history(self) -> pd.DataFrame:
        """Per-epoch loss terms of the last :meth:`train` call.

        Columns: ``stage`` ("pretrain" or "cluster"), ``epoch`` (1-based within the stage),
        the unweighted terms ``zinb``, ``rec``, ``graph``, ``kl`` (NaN in pretraining), the
        weighted ``total`` that was minimised, ``labels_changed`` (fraction of labels that
        changed when P was refreshed before this epoch, NaN otherwise) and ``seconds`` since
        training started.
        """
        return self._history.copy()

    # ------------------------------------------------------------------ training

    def train(
        self,
        params: TrainParams | None = None,
        *,
        device: settings.DeviceOption | str = "auto",
        threads: int | None = None,
        deterministic: bool = False,
        **train_kwargs: Any,
    ) -> SCDSEC:
        """Pretrain, initialise the centres with k-means, then train with the joint objective.

        Parameters
        ----------
        params
            Training schedule and loss weights; default: the training part of the ``params``
            the model was built (or saved) with. Overrides do not carry over to later calls.
        device
            ``"auto"`` (first visible GPU, else the CPU), ``"cpu"`` or ``"cuda"``.
        threads
            CPU threads for torch and BLAS; ``None`` leaves the current setting.
        deterministic
            Ask torch for deterministic kernels (needed for identical reruns on a GPU).
        **train_kwargs
            Single :class:`TrainParams` fields overriding ``params``, e.g. ``epochs=50``.

        Returns
        -------
        The model itself; labels are those of the final epoch (see :meth:`predict`).
        """
        base = params if params is not None else self._train_defaults
        tp = TrainParams.from_dict({**dataclasses.asdict(base), **train_kwargs})
        data = self._data
        if data is None or data.counts is None or data.size_factors is None:
            raise InputError(
                "training needs an AnnData with layers['counts'] and obs['size_factor']: "
                "load the model with adata=... holding them"
            )
        settings.set_threads(threads)
        device = settings.select_device(device)
        settings.seed_everything(self.seed, deterministic)
        generator = torch.Generator().manual_seed(self.seed)
        self.params = dataclasses.replace(self.params, train=tp)
        self._run = {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "deterministic": bool(deterministic),
        }
        self.module.to(device)
        batch = self._make_batch(np.arange(len(data.x)), device)
        start = time.perf_counter()
        rows = self._pretrain(batch, tp, generator, start)
        rows += self._cluster(batch, tp, generator, start)
        self.module.eval()
        self.is_trained = True
        self._history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
        settings.logger.info("scDSEC: trained in %.1f s", time.perf_counter() - start)
        return self

    def _pretrain(
        self, batch: _Batch, tp: TrainParams, generator: torch.Generator, start: float
    ) -> list[dict[str, Any]]:
        """Stage 1: the network without the clustering term; returns the history rows."""
        network = [*self.module.encoder.parameters(), *self.module.decoder.parameters()]
        optimizer = torch.optim.Adam(network, lr=tp.pretrain_lr)
        settings.logger.info("scDSEC: pretraining for %d epochs", tp.pretrain_epochs)
        rows = []
        bar = tqdm(
            range(tp.pretrain_epochs),
            desc="scDSEC pretrain",
            disable=not settings.progress_enabled(),
        )
        for epoch in bar:
            terms = self._step(batch, optimizer, tp, generator, target=None)
            bar.set_postfix(loss=f"{terms['total']:.4f}")
            seconds = time.perf_counter() - start
            rows.append({"stage": "pretrain", "epoch": epoch + 1, **terms, "seconds": seconds})
        return rows

    def _cluster(
        self, batch: _Batch, tp: TrainParams, generator: torch.Generator, start: float
    ) -> list[dict[str, Any]]:
        """Stages 2–3: k-means initialisation, then the joint objective; returns history rows."""
        labels = self._init_centers(batch, tp)
        optimizer = torch.optim.Adam(self.module.parameters(), lr=tp.lr)
        settings.logger.info("scDSEC: joint training for %d epochs", tp.epochs)
        rows = []
        target = None
        bar = tqdm(range(tp.epochs), desc="scDSEC cluster", disable=not settings.progress_enabled())
        for epoch in bar:
            changed = float("nan")
            if epoch % tp.update_interval == 0:
                # P from Q of all cells (with mini-batches: Q over every batch, then indexed)
                q = self._soft_assignment(batch)
                new_labels = q.argmax(dim=1).cpu().numpy()
                changed = float(np.mean(new_labels != labels))
                labels = new_labels
                if epoch > 0 and changed < tp.tol:
                    settings.logger.info(
                        "scDSEC: %.4f of the labels changed (< tol %g): stopping after %d epochs",
                        changed,
                        tp.tol,
                        epoch,
                    )
                    break
                target = _losses.target_distribution(q, tp.target_frequency_exponent)
            terms = self._step(batch, optimizer, tp, generator, target=target[batch.index])
            bar.set_postfix(loss=f"{terms['total']:.4f}")
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "stage": "cluster",
                    "epoch": epoch + 1,
                    **terms,
                    "labels_changed": changed,
                    "seconds": seconds,
                }
            )
        return rows

    def _step(
        self,
        batch: _Batch,
        optimizer: torch.optim.Optimizer,
        tp: TrainParams,
        generator: torch.Generator,
        target: torch.Tensor | None,
    ) -> dict[str, float]:
        """One optimisation step on ``batch``; ``target`` is P for its cells (None: no KL)."""
        self.module.train()
        out = self.module(batch.x, batch.adj, batch.size_factors)
        non_edges = sample_non_edges(batch.edge_keys, len(batch.index), len(batch.edges), generator)
        terms = {
            "zinb": _losses.zinb_nll(batch.counts, *out.decoded[1:]),
            "rec": _losses.reconstruction_mse(out.decoded.reconstruction, batch.x),
            "graph": _losses.graph_bce(out.z, batch.edges, non_edges.to(batch.x.device)),
        }
        weights = {"zinb": tp.zinb_weight, "rec": tp.rec_weight, "graph": tp.graph_weight}
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

    def _init_centers(self, batch: _Batch, tp: TrainParams) -> np.ndarray:
        """Set the centres by k-means (see ``TrainParams.center_init``); return its labels."""
        self.module.eval()
        with torch.no_grad():
            z = self.module.encoder(batch.x, batch.adj).cpu().numpy()
        kmeans = KMeans(self.n_clusters, n_init=tp.kmeans_n_init, random_state=self.seed)
        if tp.center_init == "embedding":
            labels = kmeans.fit_predict(z)
            centers = kmeans.cluster_centers_
        else:
            if self._data.pca is None:  # as the graph step computes it
                settings.logger.info("scDSEC: adata.obsm['X_pca'] is absent: PCA of adata.X")
                self._data.pca = principal_components(self._data.x)
            space = np.asarray(self._data.pca[batch.index.numpy()], dtype=np.float64)
            if tp.center_init == "both":  # total variances in the ratio share : (1 - share)
                share = tp.center_init_pca_share
                weights = np.sqrt([share, 1.0 - share])
                weights /= weights.max()  # k-means is scale-free; 0.5 weighs both blocks 1
                blocks = zip(weights, (space, z), strict=True)
                space = np.hstack([w * b / np.sqrt(b.var(axis=0).sum()) for w, b in blocks])
            labels = kmeans.fit_predict(space)
            sums = np.zeros((self.n_clusters, z.shape[1]))
            np.add.at(sums, labels, z)
            centers = sums / np.bincount(labels, minlength=self.n_clusters)[:, None]
        centers = torch.as_tensor(centers, dtype=torch.float32)
        self.module.assignment.set_centers(centers.to(batch.x.device))
        return labels

    def _soft_assignment(self, batch: _Batch) -> torch.Tensor:
        self.module.eval()
        with torch.no_grad():
            return self.module.assignment(self.module.encoder(batch.x, batch.adj))

    def _make_batch(self, index: np.ndarray, device: torch.device) -> _Batch:
        """The cells ``index`` with their induced subgraph, as tensors on ``device``."""
        data = self._data
        sub = data.adj[index][:, index]
        edges = upper_edges(sub)
        if len(edges) == 0:
            raise InputError("the kNN graph adata.obsp['knn'] has no edges")
        return _Batch(
            index=torch.from_numpy(index),
            x=torch.from_numpy(data.x[index]).to(device),
            counts=torch.from_numpy(data.counts[index].toarray()).to(device),
            size_factors=torch.from_numpy(data.size_factors[index]).to(device),
            adj=to_torch_sparse(normalize_adjacency(sub), device),
            edges=edges.to(device),
            edge_keys=pair_keys(edges, len(index)),
        )

    # ------------------------------------------------------------------ inference

    def _encode(self, adata: ad.AnnData | None) -> torch.Tensor:
        """Z of the training cells (``adata=None``) or of other prepared cells."""
        if adata is None:
            if self._data is None:
                raise InputError("this model holds no cells: pass adata=...")
            data = self._data
        else:
            data = _read_cells(adata, genes=self.genes, training=False)
        device = next(self.module.parameters()).device
        x = torch.from_numpy(data.x).to(device)
        adj = to_torch_sparse(normalize_adjacency(data.adj), device)
        self.module.eval()
        with torch.no_grad():
            return self.module.encoder(x, adj)

    def get_latent_representation(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """The embedding ``Z`` (cells × latent size).

        Parameters
        ----------
        adata
            Cells prepared like the training cells (same genes, ``X`` and ``obsp["knn"]``);
            default: the training cells.
        """
        return self._encode(adata).cpu().numpy()

    def get_soft_assignment(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """The soft assignment ``Q`` (cells × clusters), rows summing to 1; see :meth:`train`."""
        if not self.is_trained:
            raise RuntimeError("the cluster centres are set by train(): train the model first")
        with torch.no_grad():
            return self.module.assignment(self._encode(adata)).cpu().numpy()

    def predict(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """Cluster labels ``argmax_j q_ij`` (int64, 0 … K−1) with the current (final) weights."""
        return self.get_soft_assignment(adata).argmax(axis=1).astype(np.int64)

    def annotate(self, adata: ad.AnnData | None = None, key_added: str = "scdsec") -> None:
        """Write the results into an AnnData, scanpy style.

        Sets ``obs[key_added]`` (categorical labels "0" … "K−1"), ``obsm["X_" + key_added]``
        (the embedding), ``obsm[key_added + "_q"]`` (the soft assignment) and
        ``uns[key_added]`` (parameters, seed, device, threads, provenance with versions, and the
        loss history as a dict of lists).

        Parameters
        ----------
        adata
            Cells to annotate; default: the AnnData the model was built with.
        key_added
            Name under which the results are stored.
        """
        target = adata if adata is not None else self.adata
        if target is None:
            raise InputError("this model holds no AnnData: pass adata=...")
        if not self.is_trained:
            raise RuntimeError("the cluster centres are set by train(): train the model first")
        z = self._encode(adata)
        with torch.no_grad():
            q = self.module.assignment(z).cpu().numpy()
        categories = [str(k) for k in range(self.n_clusters)]
        target.obs[key_added] = pd.Categorical(q.argmax(axis=1).astype(str), categories=categories)
        target.obsm[f"X_{key_added}"] = z.cpu().numpy()
        target.obsm[f"{key_added}_q"] = q
        target.uns[key_added] = {
            "params": self.params.to_dict(),
            "n_clusters": self.n_clusters,
            "seed": self.seed,
            **self._run,
            "provenance": provenance(),
            "history": _history_dict(self._history),
        }

    # ------------------------------------------------------------------ checkpoints

    def save(self, dir_path: str | Path, overwrite: bool = False) -> None:
        """Write a checkpoint folder: ``model.pt`` (weights) and ``model.json`` (the rest).

        ``model.json`` holds the constructor arguments, the gene names, everything needed to
        prepare new cells the same way (``uns["scdsec_preprocess"]``: genes, scaling mean and
        std, median library size, clip), the training parameters, history and provenance.

        Parameters
        ----------
        dir_path
            Folder to write (created if needed).
        overwrite
            Replace an existing checkpoint in that folder.
        """
        path = Path(dir_path)
        if not overwrite and ((path / STATE_FILE).exists() or (path / META_FILE).exists()):
            raise FileExistsError(f"{path} already holds a checkpoint; pass overwrite=True")
        path.mkdir(parents=True, exist_ok=True)
        state = {name: t.detach().cpu() for name, t in self.module.state_dict().items()}
        torch.save(state, path / STATE_FILE)
        meta = {
            "format": 1,
            "n_clusters": self.n_clusters,
            "seed": self.seed,
            "params": self.params.to_dict(),
            "genes": self.genes,
            "preprocess": self.preprocess,
            "is_trained": self.is_trained,
            "run": self._run,
            "history": _history_dict(self._history),
            "provenance": provenance(),
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, dir_path: str | Path, adata: ad.AnnData | None = None) -> SCDSEC:
        """Read a checkpoint written by :meth:`save` (weights on the CPU).

        Parameters
        ----------
        dir_path
            The checkpoint folder.
        adata
            Cells to attach (used when no ``adata`` is passed to the inference methods, and
            for further training). Its genes must be the model's, in any order.

        Raises
        ------
        InputError
            If ``adata``'s genes differ from the model's (the message names the mismatch).
        """
        path = Path(dir_path)
        try:
            meta = json.loads((path / META_FILE).read_text())
        except FileNotFoundError:
            raise InputError(f"{path} holds no scDSEC checkpoint ({META_FILE} missing)") from None
        model = cls.__new__(cls)
        model._setup(
            meta["n_clusters"],
            Params.from_dict(meta["params"]),
            meta["seed"],
            meta["genes"],
            meta["preprocess"],
        )
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        model.module.load_state_dict(state)
        model.module.eval()
        model.is_trained = bool(meta["is_trained"])
        model._run = meta["run"]
        model._history = pd.DataFrame(meta["history"], columns=list(HISTORY_COLUMNS))
        model.adata = adata
        model._data = None if adata is None else _read_cells(adata, model.genes, training=False)
        return model


def _resolve_params(params: ModelParams | Params | str | None, overrides: dict) -> Params:
    if params is None:
        params = get_preset("default")
    elif isinstance(params, str):
        params = get_preset(params)
    elif isinstance(params, ModelParams):
        params = Params(model=params)
    elif not isinstance(params, Params):
        raise InputError(f"params must be ModelParams, Params or a preset name, got {params!r}")
    if overrides:
        model = ModelParams.from_dict({**dataclasses.asdict(params.model), **overrides})
        params = dataclasses.replace(params, model=model)
    return params


def _gene_order(adata: ad.AnnData, genes: list[str]) -> np.ndarray | None:
    """Column positions that put ``adata``'s genes in the model's order (None: already so)."""
    have = [str(g) for g in adata.var_names]
    if have == genes:
        return None
    present = set(have)
    expected = set(genes)
    missing = [g for g in genes if g not in present]
    extra = [g for g in have if g not in expected]
    if missing or extra or len(have) != len(genes):
        raise InputError(
            f"the AnnData's genes differ from the model's {len(genes)} genes: "
            f"{len(missing)} missing (first: {missing[:5]}), "
            f"{len(extra)} not in the model (first: {extra[:5]}). Prepare the cells with the "
            "model's gene list (model.genes) and scaling (model.preprocess)."
        )
    position = {g: i for i, g in enumerate(have)}
    return np.array([position[g] for g in genes])


def _read_cells(adata: ad.AnnData, genes: list[str] | None, training: bool) -> _CellData:
    """Check the input contract and read the arrays; ``genes`` reorders the columns."""
    order = None if genes is None else _gene_order(adata, genes)
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    x = np.ascontiguousarray(x if order is None else x[:, order], dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError("adata.X holds NaN or infinite values")
    if "knn" not in adata.obsp:
        raise InputError(
            "adata.obsp['knn'] is missing: build the cell graph first (scdsec's graph step)"
        )
    adj = sp.csr_matrix(adata.obsp["knn"], dtype=np.float32)
    if (adj != adj.T).nnz:
        raise InputError("adata.obsp['knn'] must be symmetric")
    counts = size_factors = None
    if "counts" in adata.layers:
        counts = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
        counts = counts if order is None else counts[:, order]
        if counts.shape != x.shape:
            raise InputError(f"adata.layers['counts'] has shape {counts.shape}, X {x.shape}")
    elif training:
        raise InputError("adata.layers['counts'] (raw counts, the ZINB target) is missing")
    if "size_factor" in adata.obs:
        size_factors = adata.obs["size_factor"].to_numpy(dtype=np.float32)
        if not (np.isfinite(size_factors).all() and (size_factors > 0).all()):
            raise InputError("adata.obs['size_factor'] must be finite and positive")
    elif training:
        raise InputError("adata.obs['size_factor'] is missing")
    pca = adata.obsm.get("X_pca")  # a view, read only when a centre start needs it
    return _CellData(x=x, adj=adj, counts=counts, size_factors=size_factors, pca=pca)


def _history_dict(history: pd.DataFrame) -> dict[str, list]:
    return {column: history[column].tolist() for column in history.columns}


def _jsonable(value: Any) -> Any:
    """``value`` with NumPy/pandas containers turned into JSON-writable lists and scalars."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | pd.Index | pd.Series | list | tuple):
        return [_jsonable(v) for v in list(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
