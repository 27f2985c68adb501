"""The scDSEC model class: reads the AnnData, trains (``_training``), infers, writes results and
checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .. import settings
from .._errors import InputError
from ..graph import check_cell_count
from ..provenance import plain, provenance
from . import _training
from ._checkpoint import TrainingCheckpoint, fingerprint
from ._data import CellBatches, CellData, make_batch, read_batch_codes, read_cells
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
    "contrastive",
    "total",
    "labels_changed",
    "seconds",
)


class SCDSEC:
    """Deep structure-enhanced cell clustering (scDSEC) of one AnnData.

    Parameters
    ----------
    adata
        Cells × highly variable genes, as the preprocessing and graph steps leave it:
        ``X`` the scaled network input, ``layers["counts"]`` the raw counts,
        ``obs["scdsec_size_factor"]``, ``obsp["knn"]`` the binary kNN graph and
        ``uns["scdsec_preprocess"]`` what the preparation did (stored in checkpoints).
    n_clusters
        Number of clusters ``K``, or ``"auto"``: ``K`` starts as the Leiden estimate of the
        kNN graph (:func:`scdsec.clustering.estimate_n_clusters`) and, with
        ``train.overcluster`` > 1, becomes the number of clusters left after the merges of
        joint training (``n_clusters`` holds it once trained).
    params
        Architecture (:class:`ModelParams`), a full :class:`Params` (its training part becomes
        the default of :meth:`train`) or a preset name from :data:`PRESETS`. Default: the
        ``"default"`` preset.
    seed
        Seeds the weight initialisation, the non-edge sampling and k-means; the same seed on
        the CPU gives the same labels.
    batch_key
        An ``obs`` column giving each cell's batch (sample, donor, platform …; categorical or
        anything read as strings), scanpy's and scvi-tools' ``batch_key``. With
        ``batch_covariate`` (default) the expression decoder is conditioned on the one-hot
        batch, as scVI conditions its decoder, so that ``Z`` need not encode it; the encoder
        never sees it. The batches (sorted strings) are kept as ``batch_categories`` and
        saved with the model; new cells given to the inference methods need the same column,
        with known batches only. None (default): no batch, the network of earlier versions.
    **model_kwargs
        Single :class:`ModelParams` fields overriding ``params``, e.g. ``alpha=0.3``.

    Raises
    ------
    InputError
        If ``adata`` is not prepared, ``n_clusters`` is out of range, a parameter is bad, or
        ``obs[batch_key]`` is missing, holds missing values or fewer than 2 batches.

    Examples
    --------
    >>> model = SCDSEC(adata, n_clusters=8, seed=0)
    >>> model.train(pretrain_epochs=100)
    >>> model.annotate()  # adata.obs["scdsec"], adata.obsm["X_scdsec"], ...
    """

    def __init__(
        self,
        adata: ad.AnnData,
        n_clusters: int | str,
        params: ModelParams | Params | str | None = None,
        *,
        seed: int = 0,
        batch_key: str | None = None,
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
        # before the Leiden estimate under auto, which takes a while
        categories = None if batch_key is None else read_batch_codes(adata, batch_key)[1]
        auto = n_clusters == "auto"
        estimate = None
        if auto:
            from ..clustering import n_clusters_estimate

            estimate = n_clusters_estimate(adata, seed=seed)
            n_clusters = estimate["n_clusters"]
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
            raise InputError(f"n_clusters must be an integer or 'auto', got {n_clusters!r}")
        if n_clusters < 2:
            raise InputError(f"n_clusters must be at least 2, got {n_clusters}")
        check_cell_count(adata.n_obs, n_clusters=int(n_clusters))
        data = read_cells(
            adata, genes=None, training=True, batch_key=batch_key, batch_categories=categories
        )
        self._setup(
            int(n_clusters),
            resolved,
            seed,
            genes,
            plain(preprocess),
            auto=auto,
            estimate=estimate,
            batch_key=batch_key,
            batch_categories=categories,
        )
        self.adata: ad.AnnData | None = adata
        self._data: CellData | None = data

    def _setup(
        self,
        n_clusters: int,
        params: Params,
        seed: int,
        genes: list[str],
        preprocess: dict,
        *,
        auto: bool = False,
        estimate: dict | None = None,
        batch_key: str | None = None,
        batch_categories: list[str] | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_clusters_auto = auto
        #: Under ``auto``: :func:`scdsec.clustering.n_clusters_estimate` (K and its range),
        #: recorded with the training run (``uns[key]['n_clusters_estimate']``); else None.
        self.n_clusters_estimate = estimate
        self.params = params
        self._train_defaults = params.train
        self.seed = int(seed)
        self.genes = genes
        self.preprocess = preprocess
        #: The ``obs`` column of the cells' batches, and the batches (sorted strings); None
        #: without a batch key.
        self.batch_key = batch_key
        self.batch_categories = None if batch_categories is None else list(batch_categories)
        settings.seed_everything(self.seed)
        self.module = SCDSECModule(
            len(genes),
            n_clusters,
            **dataclasses.asdict(params.model),
            n_batches=len(self.batch_categories or ()),
        )
        self.is_trained = False
        self._history = pd.DataFrame(columns=list(HISTORY_COLUMNS))
        self._run: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = "trained" if self.is_trained else "not trained"
        batches = ""
        if self.batch_key is not None:
            batches = f", {len(self.batch_categories)} batches in obs[{self.batch_key!r}]"
        return (
            f"SCDSEC({len(self.genes)} genes, {self.n_clusters} clusters{batches}, seed "
            f"{self.seed}, {state}; {self.params.model})"
        )

    @property
    def history(self) -> pd.DataFrame:
        """Per-epoch loss terms of the last :meth:`train` call.

        Columns: ``stage`` ("pretrain" or "cluster"), ``epoch`` (1-based within the stage),
        the unweighted terms ``zinb``, ``rec``, ``graph``, ``kl`` (NaN in pretraining),
        ``contrastive`` (NaN unless ``train.contrastive_weight`` > 0), the
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
        deterministic: bool | str = "auto",
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 10,
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
            Ask torch for deterministic kernels: ``True``, ``False`` or ``"auto"`` (default:
            on the CPU, where they cost no measurable time and make reruns identical, not on a
            GPU, where deterministic scatter-adds are slow).
        checkpoint
            A file for the training's state, saved every ``checkpoint_every`` epochs (written
            under a temporary name, then moved into place). When it holds the state of this
            same run (parameters, seed, clusters, cells, genes, device kind, deterministic
            kernels), training resumes from it; on the CPU it then ends with the labels of an
            uninterrupted run. Removed when training ends. None: no checkpoints.
        checkpoint_every
            Epochs between checkpoints (each stage counts its own epochs).
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
                "training needs an AnnData with layers['counts'] and obs['scdsec_size_factor']: "
                "load the model with adata=... holding them"
            )
        settings.set_threads(threads)
        device = settings.select_device(device)
        deterministic = settings.resolve_deterministic(deterministic, device)
        settings.seed_everything(self.seed, deterministic)
        generator = torch.Generator().manual_seed(self.seed)
        self.params = dataclasses.replace(self.params, train=tp)
        self._run = {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "deterministic": bool(deterministic),
        }
        if self.n_clusters_estimate is not None:
            self._run["n_clusters_estimate"] = dict(self.n_clusters_estimate)
        self.module.to(device)
        start = time.perf_counter()
        batches = CellBatches(
            data, tp.batch_size, tp.parts_per_batch, device, generator, seed=self.seed
        )
        if not batches.is_full_batch:
            record = batches.describe()
            settings.logger.info(
                "scDSEC: %d mini-batches of about %d cells (%d METIS parts; %.1f%% of the kNN "
                "edges inside a part)",
                record["n_batches"],
                record["batch_size"],
                record["n_parts"],
                100 * record["edges_in_parts"],
            )
        saver = None
        if checkpoint is not None:
            run = fingerprint(
                params=self.params.to_dict(),
                seed=self.seed,
                n_clusters=self.n_clusters,
                genes=self.genes,
                cells=data.n_cells,
                x=hashlib.sha256(np.ascontiguousarray(data.x).data).hexdigest(),
                device=device.type,
                deterministic=deterministic,
                # with a batch key, which batch each cell is in (none added without one)
                **({} if self.batch_key is None else self._batch_facts(data)),
            )
            saver = TrainingCheckpoint(checkpoint, checkpoint_every, run)
        rows = _training.fit(
            self.module,
            batches,
            tp,
            seed=self.seed,
            generator=generator,
            n_clusters="auto" if self.n_clusters_auto else self.n_clusters,
            checkpoint=saver,
        )
        self.n_clusters = int(self.module.assignment.centers.shape[0])
        self.is_trained = True
        if saver is not None and saver.resumed is not None:
            self._run["resumed_from"] = saver.resumed
        self._history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
        self._run["batches"] = batches.describe()
        settings.logger.info("scDSEC: trained in %.1f s", time.perf_counter() - start)
        return self

    def _batch_facts(self, data: CellData) -> dict[str, Any]:
        codes = np.ascontiguousarray(data.batch)
        return {
            "batch_key": self.batch_key,
            "batch_categories": self.batch_categories,
            "batches": hashlib.sha256(codes.data).hexdigest(),
        }

    # ------------------------------------------------------------------ inference

    def _read(self, adata: ad.AnnData, training: bool) -> CellData:
        """Cells prepared like the training cells, their batches read as the model's."""
        return read_cells(
            adata,
            genes=self.genes,
            training=training,
            batch_key=self.batch_key,
            batch_categories=self.batch_categories,
        )

    def _encode(self, adata: ad.AnnData | None) -> torch.Tensor:
        """Z of the training cells (``adata=None``) or of other prepared cells."""
        if adata is None:
            if self._data is None:
                raise InputError("this model holds no cells: pass adata=...")
            data = self._data
        else:
            data = self._read(adata, training=False)
        device = next(self.module.parameters()).device
        everyone = make_batch(data, np.arange(data.n_cells), device, training=False)
        return _training.embed(self.module, everyone)

    def get_latent_representation(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """The embedding ``Z`` (cells × latent size).

        Parameters
        ----------
        adata
            Cells prepared like the training cells (same genes, ``X`` and ``obsp["knn"]``;
            with a batch key, ``obs[batch_key]`` holding batches the model knows); default:
            the training cells.

        Raises
        ------
        InputError
            If ``adata`` lacks what the model reads (the message names it) or holds batches
            the model was not trained on.
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
        ``uns[key_added]`` (parameters, seed, ``batch_key`` (None without one) and, with one,
        ``batch_categories``, device, threads, provenance with versions, and the loss history
        as a dict of lists).

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
            "batch_key": self.batch_key,
            **({} if self.batch_key is None else {"batch_categories": self.batch_categories}),
            **self._run,
            "provenance": provenance(),
            "history": _history_dict(self._history),
        }

    # ------------------------------------------------------------------ checkpoints

    def save(self, dir_path: str | Path, overwrite: bool = False) -> None:
        """Write a checkpoint folder: ``model.pt`` (weights) and ``model.json`` (the rest).

        ``model.json`` holds the constructor arguments (with the batch key and the batches), the
        gene names, everything needed to
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
        from .._files import atomic_path

        (path / META_FILE).unlink(missing_ok=True)  # incomplete until the new one is written
        state = {name: t.detach().cpu() for name, t in self.module.state_dict().items()}
        with atomic_path(path / STATE_FILE) as tmp:
            torch.save(state, tmp)
        meta = {
            "format": 1,
            "n_clusters": self.n_clusters,
            "seed": self.seed,
            "params": self.params.to_dict(),
            "genes": self.genes,
            "preprocess": self.preprocess,
            "batch_key": self.batch_key,
            "batch_categories": self.batch_categories,
            "is_trained": self.is_trained,
            "run": self._run,
            "history": _history_dict(self._history),
            "provenance": provenance(),
        }
        with atomic_path(path / META_FILE) as tmp:  # written last: it marks the folder complete
            tmp.write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, dir_path: str | Path, adata: ad.AnnData | None = None) -> SCDSEC:
        """Read a checkpoint written by :meth:`save` (weights on the CPU).

        Parameters
        ----------
        dir_path
            The checkpoint folder.
        adata
            Cells to attach (used when no ``adata`` is passed to the inference methods, and
            for further training). Its genes must be the model's, in any order; with a batch
            key it needs ``obs[batch_key]`` with batches the model knows.

        Raises
        ------
        InputError
            If ``adata``'s genes differ from the model's (the message names the mismatch), or
            its batches do not fit the model's.

        Checkpoints written before batch keys existed load as models without one.
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
            estimate=meta["run"].get("n_clusters_estimate"),
            batch_key=meta.get("batch_key"),
            batch_categories=meta.get("batch_categories"),
        )
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        model.module.load_state_dict(state)
        model.module.eval()
        model.is_trained = bool(meta["is_trained"])
        model._run = meta["run"]
        model._history = pd.DataFrame(meta["history"], columns=list(HISTORY_COLUMNS))
        model.adata = adata
        model._data = None if adata is None else model._read(adata, training=False)
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


def _history_dict(history: pd.DataFrame) -> dict[str, list]:
    return {column: history[column].tolist() for column in history.columns}
