"""The cells as the training loop reads them: arrays from the AnnData, and batches of them.

A *batch* is a set of cells with the kNN graph induced on them. Full-batch training sees one
batch of every cell each epoch; mini-batch training (Cluster-GCN, Chiang et al. 2019, KDD)
partitions the graph once with METIS (``pymetis``) into parts that keep most kNN edges inside,
and each epoch joins a shuffled few parts into each batch, so every cell is seen once per
epoch and most of its edges with it. Both are :class:`CellBatches`: the loop does not know
which it has. Nothing here forms an N×N dense matrix; counts stay sparse until a batch
reaches the device.

(A *batch* of cells is a training step's; the *batch* of a cell, with a batch key, is its
sample, donor or platform, read by :func:`read_batch_codes` and carried as ``batch`` codes.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .._checks import check_batch_key
from .._errors import InputError
from ._graph import normalize_adjacency, pair_keys, to_torch_sparse, upper_edges

#: Where the graph step records the representation it built the kNN graph on
#: (``uns[GRAPH_KEY]["use_rep"]``); absent: ``obsm["X_pca"]``.
GRAPH_KEY = "scdsec_graph"
DEFAULT_REP = "X_pca"

# batch_size "auto": one batch of every cell up to this many cells, else mini-batches of about
# this many (TrainParams.batch_size says why).
AUTO_BATCH_SIZE = 8_192


@dataclass
class CellData:
    """What the model reads from an AnnData (the input contract of the preprocessing steps)."""

    x: np.ndarray  # network input, N × t float32
    adj: sp.csr_matrix  # binary kNN adjacency A, no self loops
    counts: sp.csr_matrix | None  # raw counts of the t genes (needed for training only)
    size_factors: np.ndarray | None  # per-cell size factors (needed for training only)
    pca: np.ndarray | None  # the graph step's PCA coordinates (center_init "pca" or "both")
    batch: np.ndarray | None = None  # each cell's batch code (int64, N) with a batch key
    pca_key: str = DEFAULT_REP  # the obsm key ``pca`` was read from (or is missing under)

    @property
    def n_cells(self) -> int:
        return self.x.shape[0]


@dataclass
class Batch:
    """The cells one training step sees, with the graph induced on them, on the device."""

    index: torch.Tensor  # positions of the cells in the AnnData (int64, on the device)
    x: torch.Tensor  # network input (B × t)
    counts: torch.Tensor | None  # raw counts (B × t), None for inference
    size_factors: torch.Tensor | None  # (B,), None for inference
    adj: torch.Tensor  # normalised adjacency Â of the induced subgraph, sparse B × B
    edges: torch.Tensor | None  # (E, 2) edges i < j of the induced subgraph; None for inference
    edge_keys: torch.Tensor | None  # sorted pair keys of ``edges`` on the CPU (non-edge sampling)
    batch: torch.Tensor | None = None  # batch codes (int64, B), None without a batch key

    def __len__(self) -> int:
        return len(self.index)


def read_cells(
    adata: ad.AnnData,
    genes: list[str] | None,
    training: bool,
    *,
    batch_key: str | None = None,
    batch_categories: list[str] | None = None,
) -> CellData:
    """Check the input contract and read the arrays; ``genes`` reorders the columns.

    The PCA coordinates for the centres' start are those the graph step built the graph on:
    ``obsm[uns["scdsec_graph"]["use_rep"]]`` (e.g. ``"X_pca_harmony"`` after a batch
    correction), else ``obsm["X_pca"]``. With ``batch_key`` each cell's batch code is read by
    :func:`read_batch_codes` (against ``batch_categories`` when given).

    Raises
    ------
    InputError
        If a required field is missing or malformed (the message names it).
    """
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
    if "scdsec_size_factor" in adata.obs:
        size_factors = adata.obs["scdsec_size_factor"].to_numpy(dtype=np.float32)
        if not (np.isfinite(size_factors).all() and (size_factors > 0).all()):
            raise InputError("adata.obs['scdsec_size_factor'] must be finite and positive")
    elif training:
        raise InputError("adata.obs['scdsec_size_factor'] is missing")
    pca_key = graph_representation(adata)
    # a view, read only when a centre start needs it; scanpy's use_rep "X" is X itself
    pca = x if pca_key == "X" else adata.obsm.get(pca_key)
    batch = None
    if batch_key is not None:
        batch, _ = read_batch_codes(adata, batch_key, batch_categories)
    return CellData(
        x=x,
        adj=adj,
        counts=counts,
        size_factors=size_factors,
        pca=pca,
        batch=batch,
        pca_key=pca_key,
    )


def graph_representation(adata: ad.AnnData) -> str:
    """The ``obsm`` key of the representation the kNN graph was built on.

    ``uns["scdsec_graph"]["use_rep"]`` when the graph step recorded one (scanpy's word), else
    ``"X_pca"``.

    Raises
    ------
    InputError
        If ``use_rep`` is recorded but is not a non-empty string.
    """
    record = adata.uns.get(GRAPH_KEY)
    if not isinstance(record, dict) or record.get("use_rep") is None:
        return DEFAULT_REP
    key = record["use_rep"]
    if not isinstance(key, str) or not key:
        raise InputError(f"adata.uns[{GRAPH_KEY!r}]['use_rep'] must name an obsm key, got {key!r}")
    return key


def read_batch_codes(
    adata: ad.AnnData, batch_key: str, categories: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Each cell's batch, from ``adata.obs[batch_key]`` (scanpy's and scvi-tools' ``batch_key``).

    Values are compared as strings (a categorical, integer or string column all work).

    Parameters
    ----------
    adata
        The cells.
    batch_key
        The ``obs`` column holding each cell's batch (sample, donor, plate, platform …).
    categories
        The batches a trained model knows (sorted strings); None: take them from the column,
        which must then hold at least 2.

    Returns
    -------
    codes
        Each cell's batch as an int64 position in ``categories`` (length N).
    categories
        The batches, sorted as strings.

    Raises
    ------
    InputError
        If the column is missing, holds missing values (NaN, None, empty), has fewer than 2
        distinct values (``categories`` None) — :func:`scdsec._checks.check_batch_key`, the
        check every step makes — or holds batches not in ``categories``.
    """
    # new cells of a trained model may come from one of its batches only
    batches = check_batch_key(adata.obs, batch_key, min_batches=2 if categories is None else 1)
    if categories is None:
        categories = [str(c) for c in batches.categories]
    else:
        categories = [str(c) for c in categories]
        unknown = sorted(set(batches.categories) - set(categories))
        if unknown:
            raise InputError(
                f"adata.obs[{batch_key!r}] holds batches the model was not trained on: "
                f"{unknown[:10]} (it knows {categories[:10]}"
                f"{' …' if len(categories) > 10 else ''})"
            )
    codes = pd.Categorical(np.asarray(batches), categories=categories).codes
    return np.asarray(codes, dtype=np.int64), categories


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


def make_batch(
    data: CellData, index: np.ndarray, device: torch.device, *, training: bool = True
) -> Batch:
    """The cells ``index`` (sorted positions) with their induced subgraph, on ``device``.

    Counts travel to a GPU as a sparse CSR tensor and become dense there. ``training=False``
    leaves out what only the losses read — counts, size factors and the edge lists (an inference
    pass needs only ``x`` and ``Â``).

    Raises
    ------
    InputError
        If a training batch's induced subgraph has no edges.
    """
    full = len(index) == data.n_cells
    sub = data.adj if full else data.adj[index][:, index]
    pin = device.type == "cuda"
    x = torch.from_numpy(data.x if full else data.x[index])
    counts = size_factors = edges = edge_keys = None
    if training:
        edges = upper_edges(sub)
        if len(edges) == 0:
            raise InputError("the kNN graph adata.obsp['knn'] has no edges among the batch's cells")
        edge_keys = pair_keys(edges, len(index))
        edges = edges.to(device)
        rows = data.counts if full else data.counts[index]
        if device.type == "cpu":  # scipy densifies faster than torch's sparse CSR on the CPU
            counts = torch.from_numpy(rows.toarray())
        else:  # sparse over the bus, dense on the device
            counts = _sparse_rows(rows, pin).to(device, non_blocking=pin).to_dense()
        size_factors = torch.from_numpy(data.size_factors[index]).to(device)
    batch = None
    if data.batch is not None:
        batch = torch.from_numpy(np.ascontiguousarray(data.batch[index])).to(device)
    return Batch(
        index=torch.from_numpy(np.asarray(index, dtype=np.int64)).to(device),
        x=(x.pin_memory() if pin else x).to(device, non_blocking=pin),
        counts=counts,
        size_factors=size_factors,
        adj=to_torch_sparse(normalize_adjacency(sub), device),
        edges=edges,
        edge_keys=edge_keys,
        batch=batch,
    )


def _sparse_rows(matrix: sp.csr_matrix, pin: bool) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR tensor (pinned for a GPU copy)."""
    parts = [
        torch.from_numpy(np.asarray(matrix.indptr, dtype=np.int64)),
        torch.from_numpy(np.asarray(matrix.indices, dtype=np.int64)),
        torch.from_numpy(np.asarray(matrix.data, dtype=np.float32)),
    ]
    if pin:
        parts = [p.pin_memory() for p in parts]
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(*parts, size=matrix.shape, check_invariants=False)


def partition_cells(adj: sp.csr_matrix, n_parts: int, seed: int = 0) -> np.ndarray:
    """Split the cells into ``n_parts`` parts of similar size that cut few kNN edges (METIS).

    Parameters
    ----------
    adj
        Symmetric kNN adjacency (N × N, sparse).
    n_parts
        Number of parts (≥ 1).
    seed
        METIS's random seed.

    Returns
    -------
    The part of each cell, an int64 array of length N with values in ``0 … n_parts − 1``.
    Karypis & Kumar (1998), through ``pymetis``.
    """
    n = adj.shape[0]
    if n_parts <= 1:
        return np.zeros(n, dtype=np.int64)
    import pymetis

    graph = sp.csr_matrix(adj)
    graph.setdiag(0)  # METIS takes no self loops
    graph.eliminate_zeros()
    options = pymetis.Options()
    options.seed = int(seed)
    _, parts = pymetis.part_graph(
        int(n_parts),
        pymetis.CSRAdjacency(graph.indptr.astype(np.int64), graph.indices.astype(np.int64)),
        options=options,
    )
    return np.asarray(parts, dtype=np.int64)


def edges_inside(adj: sp.spmatrix | sp.sparray, groups: np.ndarray) -> float:
    """Fraction of the graph's edges whose two cells lie in the same group (1.0 without edges).

    ``adj`` is the symmetric adjacency or its upper triangle (each edge counted once either way).
    """
    coo = sp.triu(adj, k=1).tocoo()
    if coo.nnz == 0:
        return 1.0
    return float(np.mean(groups[coo.row] == groups[coo.col]))


class CellBatches:
    """The batches of one training run: every cell once per epoch.

    Parameters
    ----------
    data
        The cells.
    batch_size
        ``"auto"`` (one batch up to :data:`AUTO_BATCH_SIZE` cells, else mini-batches of about
        that many), ``"full"`` (one batch) or the number of cells per batch
        (one batch when it is ≥ the number of cells).
    parts_per_batch
        METIS parts joined into each mini-batch (Cluster-GCN's q); the graph is split into
        ``parts_per_batch · ⌈N / batch_size⌉`` parts.
    device
        Where the batches go.
    generator
        Shuffles the parts each epoch (CPU generator).
    seed
        METIS's seed.

    Attributes
    ----------
    n_batches
        Batches per epoch (1 for full batch).
    edges_in_parts
        Fraction of the kNN edges inside one METIS part (1.0 for full batch): a lower bound
        of the fraction a batch keeps.
    edges_in_batches
        Mean over the epochs so far of the fraction of edges inside the batches.
    """

    def __init__(
        self,
        data: CellData,
        batch_size: int | str,
        parts_per_batch: int,
        device: torch.device,
        generator: torch.Generator,
        seed: int = 0,
    ) -> None:
        self.data = data
        self.device = device
        self.generator = generator
        n = data.n_cells
        size = resolve_batch_size(batch_size, n)
        self.batch_size = size
        self.n_batches = math.ceil(n / size)
        self.edges_in_parts = 1.0
        self._kept: list[float] = []
        self._full: Batch | None = None
        if self.n_batches == 1:
            self.parts = np.zeros(n, dtype=np.int64)
            self.parts_per_batch = 1
        else:
            self.parts_per_batch = int(parts_per_batch)
            self.parts = partition_cells(data.adj, self.n_batches * self.parts_per_batch, seed)
            self._upper = sp.triu(data.adj, k=1, format="csr")
            self.edges_in_parts = edges_inside(self._upper, self.parts)
        self._members = _members(self.parts, self.n_batches * self.parts_per_batch)

    @property
    def is_full_batch(self) -> bool:
        return self.n_batches == 1

    @property
    def edges_in_batches(self) -> float:
        return float(np.mean(self._kept)) if self._kept else self.edges_in_parts

    def epoch(self) -> Iterator[Batch]:
        """The batches of one epoch (the one full batch, built once; or freshly shuffled parts)."""
        if self.is_full_batch:
            if self._full is None:
                self._full = make_batch(self.data, np.arange(self.data.n_cells), self.device)
            yield self._full
            return
        order = torch.randperm(len(self._members), generator=self.generator).numpy()
        groups = np.array_split(order, self.n_batches)
        batch_of = np.empty(len(self._members), dtype=np.int64)
        for b, group in enumerate(groups):
            batch_of[group] = b
        self._kept.append(edges_inside(self._upper, batch_of[self.parts]))

        def build(group: np.ndarray) -> Batch:
            index = np.sort(np.concatenate([self._members[p] for p in group]))
            return make_batch(self.data, index, self.device)

        if self.device.type != "cuda":
            for group in groups:
                yield build(group)
            return
        # On a GPU the next batch is cut and copied while the device trains on this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(build, groups[0])
            for following in [*groups[1:], None]:
                batch = pending.result()
                if following is not None:
                    pending = pool.submit(build, following)
                yield batch

    def all_cells(self) -> Batch:
        """Every cell on the whole graph, for the no-grad passes that compute Z and Q."""
        if self.is_full_batch:
            return next(iter(self.epoch()))
        if self._full is None:
            self._full = make_batch(
                self.data, np.arange(self.data.n_cells), self.device, training=False
            )
        return self._full

    def describe(self) -> dict[str, float | int | bool]:
        """What the run records: batch size, batches and parts, fractions of edges kept."""
        return {
            "batch_size": int(self.batch_size),
            "n_batches": int(self.n_batches),
            "n_parts": int(len(self._members)),
            "edges_in_parts": round(self.edges_in_parts, 4),
            "edges_in_batches": round(self.edges_in_batches, 4),
        }


def resolve_batch_size(batch_size: int | str, n_cells: int) -> int:
    """Cells per batch for ``batch_size`` (see :class:`CellBatches`) and ``n_cells`` cells."""
    if batch_size == "full":
        return n_cells
    if batch_size == "auto":
        return min(n_cells, AUTO_BATCH_SIZE)
    return min(int(batch_size), n_cells)


def _members(parts: np.ndarray, n_parts: int) -> list[np.ndarray]:
    order = np.argsort(parts, kind="stable")
    bounds = np.searchsorted(parts[order], np.arange(n_parts + 1))
    return [order[bounds[p] : bounds[p + 1]] for p in range(n_parts)]
