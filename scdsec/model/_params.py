"""Architecture and training options of the scDSEC model, and named presets.

Every option is a field of a frozen dataclass; ablations are configuration runs (docs/method.md §3).
The comment above each field says what it means and why its default is what it is; these lines
are copied into the workflow's config schema.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .._errors import InputError
from ._merge import MergeCriterion

Fusion = Literal["layerwise", "none"]
GcnInput = Literal["complete", "independent"]
Variant = Literal["scdsec", "sdcn"]
CenterInit = Literal["embedding", "pca", "both"]
BatchSize = int | Literal["auto", "full"]
Epochs = int | Literal["auto"]


@dataclass(frozen=True)
class ModelParams:
    """Architecture of the scDSEC network (docs/method.md §3–4)."""

    # Widths of the encoder layers after the input (t genes); the last one is the embedding Z.
    # The expression decoder mirrors the hidden widths. Default 256-64-10: on PBMC, kidney and
    # worm it clustered better than the paper's 500-500-2000-10 with the same schedule (final
    # NMI, seed 0, after 100 pretraining epochs 0.72/0.80/0.69 vs 0.71/0.75/0.63; after 50,
    # 0.78/0.78/0.68 vs 0.69/0.56/0.59) in about half the time. The preset "paper" keeps those.
    dims: tuple[int, ...] = (256, 64, 10)
    # Weight of the internal (autoencoder) stream in each fusion C = αH + (1−α)G; 0.5 as in the
    # paper (1 = internal stream alone, 0 = external stream alone).
    alpha: float = 0.5
    # "layerwise": fuse at every layer and feed C_l to the next internal layer (the paper's
    # integrated reinforcement enhancement); "none": the stacks run independently and are fused
    # once, at Z (the paper's "w/o RE" ablation). Default "none", a departure from the paper's
    # full model: on the four datasets of ../shared/data, seeds 0–4, final NMI / ARI with
    # layerwise → none: PBMC 0.773/0.771 → 0.778/0.758, kidney 0.789/0.685 → 0.794/0.692,
    # bladder 0.727/0.529 → 0.747/0.569, worm 0.676/0.497 → 0.707/0.552; mean 0.741/0.621 →
    # 0.757/0.643. The preset "paper" keeps "layerwise".
    fusion: Fusion = "none"
    # "complete": the next GCN layer reads the fused C_l, G_{l+1} = φ(Â C_l U) (our reading of the
    # paper); "independent": it reads its own G_l. Used only with fusion="layerwise" and
    # variant="scdsec" (the other wirings fix what the GCN reads).
    gcn_input: GcnInput = "complete"
    # "scdsec": the wiring above; "sdcn": the SDCN-style baseline, where the internal stream runs
    # alone and the fused C_l feeds the GCN stream. Default: the method itself.
    variant: Variant = "scdsec"
    # Build the internal (autoencoder) stack; False is the "w/o AE" ablation (external stack
    # only, alpha is then irrelevant). Default: both stacks, as published.
    use_ae: bool = True
    # Build the external (GCN) stack; False is the "w/o GCN" ablation (internal stack only, alpha
    # is then irrelevant). Default: both stacks, as published.
    use_gcn: bool = True
    # With a batch key (SCDSEC(..., batch_key=)): concatenate each cell's one-hot batch to the
    # input of every hidden layer and of the heads of the expression decoder, as scVI
    # conditions its decoder (Lopez et al. 2018), so that Z need not encode the batch; the
    # encoder never sees it. False: the batch key is recorded but the network ignores it.
    # Default true: it acts only when a batch key is given; without one the network is the
    # same either way.
    batch_covariate: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.dims))
        if not self.dims or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.dims
        ):
            raise InputError(
                f"model.dims must be a non-empty list of positive integers, got {self.dims!r}"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"model.alpha must lie in [0, 1], got {self.alpha!r}")
        _check_literals(self, "model")
        if not (self.use_ae or self.use_gcn):
            raise InputError("model.use_ae and model.use_gcn are both false: no encoder is left")
        if self.variant == "sdcn" and self.fusion != "layerwise":
            raise InputError(
                "model.variant='sdcn' fuses at every layer by definition: set "
                "model.fusion='layerwise' with it (the default fusion is 'none')"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelParams:
        """Build from a mapping; unknown keys and wrongly typed values raise :class:`InputError`."""
        return _from_mapping(cls, values, "model")


@dataclass(frozen=True)
class TrainParams:
    """Training schedule and loss weights (docs/method.md §5–6)."""

    # Epochs of pretraining (ZINB, reconstruction and graph terms, no KL); an epoch is one pass
    # over all cells. "auto" (default): a budget of 50 optimiser steps — 50 epochs on one full
    # batch (every dataset up to 8,192 cells), ⌈50 / batches per epoch⌉ epochs with
    # mini-batches, at least 5 — so the cost stops growing with the cells where each epoch
    # already takes several steps (as scvi-tools lowers its epochs with the cells). 50 steps:
    # the best mean over PBMC, kidney and worm (final NMI after 50 joint epochs, graph weight
    # 1, 2 seeds: 0.743 at 50, 0.729 at 100, 0.730 at 150 full-batch epochs); longer
    # pretraining made PBMC worse (0.78 → 0.71) while worm gained (0.67 → 0.71). The budget's
    # measurements on the mini-batch path are in docs/scale.md.
    pretrain_epochs: Epochs = "auto"
    # Epochs of joint training with the clustering (KL) term after the k-means initialisation;
    # labels are argmax Q after the last one. "auto" (default): 50 optimiser steps, counted as
    # for pretrain_epochs (50 full-batch epochs: 100 changed NMI by < 0.01).
    epochs: Epochs = "auto"
    # Adam learning rate during pretraining. Default 1e-3: the network clusters best after a few
    # dozen full-batch steps at this rate (the paper's 1e-5 barely moves it in 50 steps).
    pretrain_lr: float = 1e-3
    # Adam learning rate during joint training. Default 1e-3: 1e-4 hardly moved the labels in
    # 100 epochs, 1e-2 destabilised them (worm NMI 0.73 at 1e-3 and 3e-3, 0.62 at 1e-2).
    lr: float = 1e-3
    # Recompute the target distribution P from Q every this many epochs. Default 1 (every
    # full-batch step, as SDCN): 10 gave the same NMI within 0.005 on PBMC and worm.
    update_interval: int = 1
    # γ of the target distribution p_ij ∝ q_ij² / f_j^γ, f_j = Σ_i q_ij the soft cluster
    # frequency (docs/method.md §5). 1 is DEC's target, which favours clusters of equal size; 0
    # sharpens Q without that pull, so that a large cell type is not pushed to split.
    target_frequency_exponent: float = 1.0
    # Stop joint training early when fewer than this fraction of labels change between two
    # updates of P; 0 turns early stopping off (default: a fixed number of epochs, reproducible).
    tol: float = 0.0
    # β1, weight of the ZINB negative log-likelihood (per entry); 1 as in the paper.
    zinb_weight: float = 1.0
    # β2, weight of the mean squared reconstruction error (per entry); 1 as in the paper.
    rec_weight: float = 1.0
    # β3, weight of the graph binary cross-entropy (per scored pair). Default 0.1 (the paper: 1):
    # on all four datasets of ../shared/data, seeds 0 and 1, final NMI / ARI with 1 → 0.1:
    # PBMC 0.783/0.776 → 0.778/0.777, kidney 0.777/0.679 → 0.789/0.692, bladder 0.725/0.505 →
    # 0.736/0.554, worm 0.668/0.521 → 0.699/0.553; 0.3 was between the two, 0 clearly worse
    # (bladder 0.684/0.443): the term helps, but at full weight it bends Z towards the dense graph.
    # (Measured with fusion="layerwise", the default then.)
    graph_weight: float = 0.1
    # Masked-gene pretraining (not in the paper): the fraction of each cell's genes hidden
    # from the network input in every pretraining step (set to 0, the gene's scaled mean);
    # the decoders still reconstruct every gene, so the embedding must predict hidden genes
    # from the others (masked autoencoders, scMAE: Fang et al. 2024). 0 (default): no mask;
    # 0.2 moved NMI by −0.005 … +0.006 per dataset over 2–4 seeds (step 5): not yet a default.
    mask_fraction: float = 0.0
    # Weight of a neighbourhood contrastive term (not in the paper), in both stages: kNN
    # neighbours are positives, other sampled cells negatives (InfoNCE over
    # contrastive_pairs sampled edges per step; scNAME, Wan et al. 2022). 0 (default): off;
    # 0.1 lost on bladder (−0.012 NMI) and paul15 (−0.024) over two seeds (step 5).
    contrastive_weight: float = 0.0
    # kNN edges sampled per step for the contrastive term (its in-batch negatives).
    contrastive_pairs: int = 1024
    # Weight of KL(P‖Q) (per cell) in joint training; 0 switches the clustering term off. 1 as in
    # the paper's objective.
    kl_weight: float = 1.0
    # k-means restarts when initialising the cluster centres on Z; 20 (≥ 10 as docs/method.md
    # §6 asks) makes the initialisation stable for little cost.
    kmeans_n_init: int = 20
    # Where k-means runs to initialise the cluster centres: "embedding" — on the pretrained Z
    # (docs/method.md §6, DEC); "pca" — on the graph step's PCA coordinates (obsm["X_pca"], computed
    # from X in the same way when absent); "both" — on the two side by side, each scaled to a
    # total variance of 1. With "pca" and "both" each centre is the mean Z of its cluster.
    # Default "both": chosen in every leave-one-dataset-out fold over the seven datasets of
    # ../shared/data (seeds 0–4, docs/choosing-defaults.md), mean NMI / ARI 0.759 / 0.666 →
    # 0.763 / 0.673 against "embedding"; mouse bladder 0.747 → 0.761, paul15 0.582 → 0.591,
    # zheng 0.708 → 0.716, worm 0.702 → 0.698, the other three equal; no loss on the simulated
    # imbalanced regimes.
    center_init: CenterInit = "both"
    # With center_init "both": the PCA block's share of the total variance of the space k-means
    # runs on (0 is "embedding"'s partition, 1 "pca"'s). 0.5 weighs the two blocks equally.
    center_init_pca_share: float = 0.5
    # Centres at the start of joint training, as a multiple of the clusters wanted: k-means
    # (as center_init says) starts round(overcluster · K) centres, and merge_rounds rounds of
    # merges join them back to K — or, with n_clusters auto (K the Leiden estimate), until the
    # pairs left are distinct (merge_threshold) (docs/method.md §5, scdsec/model/_merge.py).
    # 1 starts with K centres and never merges (DEC's and the paper's clustering stage).
    # Default 1: with 3 and modularity merges (γ = 0) the largest type stays whole far more
    # often (bladder 0.61 → 0.83 of it in one cluster) and NMI rises where the default trails
    # (bladder, zheng, paul15 +0.02–0.04), but worm neurons lose 0.04 on every seed, so no
    # leave-one-dataset-out fold with worm out passes (docs/choosing-defaults.md, step 5).
    overcluster: float = 1.0
    # Which pair of clusters a merge joins: "connectivity" — the most kNN edges between them
    # relative to chance (PAGA's ratio); "modularity" — the largest gain in the graph's
    # modularity (greedy agglomeration); "separation" — the closest centres in Z relative to
    # the clusters' spreads (scAce's rule). Used when overcluster > 1 or n_clusters is auto
    # (scdsec/model/_merge.py).
    merge_criterion: MergeCriterion = "modularity"
    # Rounds of merges; a round comes every merge_interval joint epochs (the first after
    # merge_interval epochs), each round joining an equal share of the surplus centres, so the
    # joint objective refines the clusters between merges and after the last round.
    merge_rounds: int = 4
    # Joint epochs between two rounds of merges.
    merge_interval: int = 5
    # With n_clusters auto: a round merges only pairs at least this alike, on the criterion's
    # scale, so merging stops where the clusters left are distinct. None: the criterion's own
    # line — 0 for "modularity" (merging no longer raises modularity), 1 for "connectivity"
    # (no more edges than chance), −1 for "separation" (centres one spread apart).
    merge_threshold: float | None = None
    # Cells per training step: "auto" — all cells in one batch up to 8,192 cells, mini-batches
    # of about 8,192 above (one full batch is the slower path per cell from ~5,000 cells on a
    # CPU, its activations no longer in cache, and its memory grows with the cells: 2.0 GiB at
    # 10,000, 6.8 GiB at 50,000; docs/scale.md); "full" — always one batch; an integer —
    # mini-batches of about that many cells. An epoch is one pass over all cells either way;
    # with mini-batches it takes one optimiser step per batch. Mini-batches are Cluster-GCN's
    # (Chiang et al. 2019): METIS parts of the kNN graph, parts_per_batch of them joined at
    # random each epoch, each step on the graph induced on its cells.
    batch_size: BatchSize = "auto"
    # METIS parts joined into each mini-batch (Cluster-GCN's q); a part holds about
    # batch_size / parts_per_batch cells. Default 32: a batch of a few parts holds few cell
    # types, which bends every step towards them (5,000 simulated cells of 10 types, batches
    # of 2,048: NMI 0.67 with 4 parts per batch, 0.84 with 16, 0.88 with 64, against 0.80 with
    # one full batch); smaller parts keep fewer kNN edges inside a batch (0.75, 0.52, 0.37).
    parts_per_batch: int = 32

    def __post_init__(self) -> None:
        names = (
            "pretrain_epochs",
            "epochs",
            "kmeans_n_init",
            "update_interval",
            "parts_per_batch",
            "merge_rounds",
            "merge_interval",
            "contrastive_pairs",
        )
        for name in names:
            minimum = 0 if name in ("pretrain_epochs", "epochs") else 1
            value = getattr(self, name)
            epochs = name in ("pretrain_epochs", "epochs")
            if epochs and value == "auto":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                also = " or 'auto'" if epochs else ""
                raise InputError(f"train.{name} must be an integer{also}, got {value!r}")
            if value < minimum:
                raise InputError(f"train.{name} must be at least {minimum}, got {value!r}")
        for name in ("pretrain_lr", "lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"train.{name} must be positive, got {getattr(self, name)!r}")
        for name in (
            "zinb_weight",
            "rec_weight",
            "graph_weight",
            "kl_weight",
            "target_frequency_exponent",
            "contrastive_weight",
        ):
            if getattr(self, name) < 0:
                raise InputError(f"train.{name} must not be negative, got {getattr(self, name)!r}")
        if not 0.0 <= self.center_init_pca_share <= 1.0:
            raise InputError(
                "train.center_init_pca_share must lie in [0, 1], "
                f"got {self.center_init_pca_share!r}"
            )
        if self.merge_threshold is not None and (
            isinstance(self.merge_threshold, bool)
            or not isinstance(self.merge_threshold, int | float)
        ):
            raise InputError(
                f"train.merge_threshold must be a number or null, got {self.merge_threshold!r}"
            )
        if not 0.0 <= self.mask_fraction < 1.0:
            raise InputError(f"train.mask_fraction must lie in [0, 1), got {self.mask_fraction!r}")
        if not self.overcluster >= 1.0:
            raise InputError(f"train.overcluster must be at least 1, got {self.overcluster!r}")
        if self.batch_size not in ("auto", "full") and not (
            isinstance(self.batch_size, int)
            and not isinstance(self.batch_size, bool)
            and self.batch_size >= 1
        ):
            raise InputError(
                "train.batch_size must be 'auto', 'full' or a positive integer, "
                f"got {self.batch_size!r}"
            )
        if not 0.0 <= self.tol < 1.0:
            raise InputError(f"train.tol must lie in [0, 1), got {self.tol!r}")
        _check_literals(self, "train")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainParams:
        """Build from a mapping; unknown keys and wrongly typed values raise :class:`InputError`."""
        return _from_mapping(cls, values, "train")


@dataclass(frozen=True)
class Params:
    """All options of one scDSEC run: the architecture and the training schedule."""

    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (lists instead of tuples), e.g. for JSON or ``adata.uns``."""
        return {
            "model": {**dataclasses.asdict(self.model), "dims": list(self.model.dims)},
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Params:
        """Build from ``{"preset": name, "model": {...}, "train": {...}}``, all keys optional.

        The preset (default ``"default"``) gives the starting values; the ``model`` and ``train``
        sections override single fields. Unknown keys raise :class:`InputError` naming the key.
        """
        unknown = sorted(set(values) - {"preset", "model", "train"})
        if unknown:
            raise InputError(
                f"unknown parameter section {unknown[0]!r}; expected 'preset', 'model' or 'train'"
            )
        base = get_preset(values.get("preset", "default"))
        model = dataclasses.asdict(base.model)
        model.update(values.get("model") or {})
        train = dataclasses.asdict(base.train)
        train.update(values.get("train") or {})
        return cls(model=ModelParams.from_dict(model), train=TrainParams.from_dict(train))


def _check_literals(obj: Any, section: str) -> None:
    for f in dataclasses.fields(obj):
        hint = get_type_hints(type(obj))[f.name]
        if get_origin(hint) is Literal and getattr(obj, f.name) not in get_args(hint):
            raise InputError(
                f"{section}.{f.name} must be one of {list(get_args(hint))}, "
                f"got {getattr(obj, f.name)!r}"
            )


def _from_mapping(cls: type, values: Mapping[str, Any], section: str) -> Any:
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise InputError(f"unknown parameter {section}.{key!s}; known: {', '.join(known)}")
        kwargs[key] = _coerce(f"{section}.{key}", value, hints[key])
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the field's type, converting JSON's lists and ints as needed."""
    origin = get_origin(hint)
    if origin is Literal:
        return value  # the membership check lives in __post_init__
    if origin in (Union, types.UnionType):
        return value  # e.g. an integer or a keyword: checked in __post_init__
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"{name} must be a list, got {value!r}")
        return tuple(_coerce(name, v, get_args(hint)[0]) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{name} must be a number, got {value!r}")
        return float(value)
    raise TypeError(f"no coercion for {name} of type {hint!r}")  # pragma: no cover


PRESETS: dict[str, Params] = {
    "default": Params(),
    # The paper's settings (docs/method.md §3, §5, §6): dims d-500-500-2000-10, layer-wise fusion
    # with α = 0.5, β = 1, DEC's target and k-means start on Z, Adam with learning rate 1e-5
    # and 50 epochs. The paper does not say of which stage, so both stages get 50 epochs, an
    # epoch being one full-batch step.
    "paper": Params(
        model=ModelParams(dims=(500, 500, 2000, 10), alpha=0.5, fusion="layerwise"),
        train=TrainParams(
            pretrain_epochs=50,
            epochs=50,
            pretrain_lr=1e-5,
            lr=1e-5,
            update_interval=1,
            zinb_weight=1.0,
            rec_weight=1.0,
            graph_weight=1.0,
            kl_weight=1.0,
            target_frequency_exponent=1.0,
            center_init="embedding",
        ),
    ),
    # A test budget: the default model with 10 joint epochs instead of 50.
    "quick": Params(train=TrainParams(epochs=10)),
}


def get_preset(name: str) -> Params:
    """The named preset from :data:`PRESETS`; an unknown name raises :class:`InputError`."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}") from None
