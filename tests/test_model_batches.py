"""Mini-batch training (Cluster-GCN): partitions, batches, and a training run through them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from test_model_training import TINY, make_prepared_adata

from scdsec import InputError
from scdsec.model import SCDSEC, TrainParams
from scdsec.model._data import (
    AUTO_BATCH_SIZE,
    CellBatches,
    edges_inside,
    partition_cells,
    read_cells,
    resolve_batch_size,
)
from scdsec.model._training import MIN_AUTO_EPOCHS, STEP_BUDGET, resolve_epochs

SHORT = {"pretrain_epochs": 3, "epochs": 3}


@pytest.fixture(scope="module")
def prepared():
    return make_prepared_adata(n_cells=300, n_types=3)


def _batches(adata, batch_size, parts_per_batch=4, seed=0):
    data = read_cells(adata, genes=None, training=True)
    generator = torch.Generator().manual_seed(seed)
    return CellBatches(data, batch_size, parts_per_batch, torch.device("cpu"), generator, seed)


def test_resolve_batch_size():
    assert resolve_batch_size("full", 10**6) == 10**6
    assert resolve_batch_size("auto", AUTO_BATCH_SIZE) == AUTO_BATCH_SIZE  # one full batch
    assert resolve_batch_size("auto", 50_000) == AUTO_BATCH_SIZE
    assert resolve_batch_size(500, 300) == 300  # one batch when it holds every cell
    assert resolve_batch_size(100, 300) == 100


def test_auto_epochs_are_a_budget_of_optimiser_steps():
    assert resolve_epochs("auto", 1) == STEP_BUDGET  # one full batch: an epoch is a step
    assert resolve_epochs("auto", 2) == math.ceil(STEP_BUDGET / 2)
    assert resolve_epochs("auto", 7) * 7 >= STEP_BUDGET  # never fewer steps than the budget
    assert resolve_epochs("auto", 10_000) == MIN_AUTO_EPOCHS  # every cell seen a few times
    assert resolve_epochs(12, 7) == 12  # a number is taken as given


@pytest.mark.parametrize("value", ["many", -1, 2.5, True])
def test_bad_epochs_are_refused_naming_the_key(value):
    with pytest.raises(InputError, match="train.epochs"):
        TrainParams.from_dict({"epochs": value})


def test_auto_epochs_follow_the_batches_in_training(prepared):
    model = SCDSEC(prepared.copy(), 3, seed=0, **TINY)
    model.train(device="cpu", batch_size=60, parts_per_batch=4)  # 300 cells: 5 batches
    history = model.history
    batches = 5
    assert (history["stage"] == "pretrain").sum() == resolve_epochs("auto", batches)
    assert (history["stage"] == "cluster").sum() == resolve_epochs("auto", batches)


@pytest.mark.parametrize("value", ["half", 0, -5, 1.5, True])
def test_bad_batch_size_is_refused_naming_the_key(value):
    with pytest.raises(InputError, match="train.batch_size"):
        TrainParams.from_dict({"batch_size": value})


def test_metis_parts_cut_fewer_edges_than_random_parts(prepared):
    adj = sp.csr_matrix(prepared.obsp["knn"])
    parts = partition_cells(adj, 6, seed=0)
    assert parts.shape == (prepared.n_obs,) and set(np.unique(parts)) == set(range(6))
    sizes = np.bincount(parts)
    assert sizes.max() <= 1.2 * sizes.min()  # parts of similar size
    random_parts = np.random.default_rng(0).integers(0, 6, prepared.n_obs)
    assert edges_inside(adj, parts) > edges_inside(adj, random_parts) + 0.2
    assert np.array_equal(parts, partition_cells(adj, 6, seed=0))  # seeded
    assert (partition_cells(adj, 1) == 0).all()


def test_edges_inside_counts_each_edge_once():
    adj = sp.csr_matrix(np.array([[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 1, 0]]))
    assert edges_inside(adj, np.array([0, 0, 1, 1])) == pytest.approx(2 / 3)
    assert edges_inside(sp.csr_matrix((3, 3)), np.zeros(3, dtype=int)) == 1.0


def test_every_cell_once_per_epoch_and_batches_reshuffled(prepared):
    batches = _batches(prepared, 100, parts_per_batch=4)
    assert not batches.is_full_batch and batches.n_batches == 3
    epochs = []
    for _ in range(2):
        seen = [b.index.numpy() for b in batches.epoch()]
        assert len(seen) == 3
        assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(prepared.n_obs))
        epochs.append([tuple(s) for s in seen])
    assert epochs[0] != epochs[1]  # the parts are joined anew each epoch
    adj = sp.csr_matrix(prepared.obsp["knn"])
    for batch in batches.epoch():
        index = batch.index.numpy()
        sub = sp.triu(adj[index][:, index], k=1)
        assert len(batch.edges) == sub.nnz  # the induced subgraph, each edge once
        assert batch.counts.shape == (len(index), prepared.n_vars)
        expected = prepared.layers["counts"][index].toarray()
        assert np.array_equal(batch.counts.numpy(), expected)
    record = batches.describe()
    assert record["n_batches"] == 3 and record["n_parts"] == 12
    assert 0 < record["edges_in_parts"] <= record["edges_in_batches"] < 1


def test_full_batch_is_one_batch_of_every_cell(prepared):
    batches = _batches(prepared, "auto")
    assert batches.is_full_batch
    (batch,) = list(batches.epoch())
    assert np.array_equal(batch.index.numpy(), np.arange(prepared.n_obs))
    assert batches.all_cells() is batch
    assert batches.describe()["edges_in_batches"] == 1.0


def test_minibatch_training_gives_the_full_batch_runs_outputs(prepared):
    full = SCDSEC(prepared.copy(), 3, seed=0, **TINY).train(device="cpu", **SHORT)
    mini = SCDSEC(prepared.copy(), 3, seed=0, **TINY)
    mini.train(device="cpu", batch_size=100, parts_per_batch=4, **SHORT)
    assert list(mini.history.columns) == list(full.history.columns)
    assert list(mini.history["stage"]) == list(full.history["stage"])
    assert np.isfinite(mini.history[["zinb", "rec", "graph", "total"]].to_numpy()).all()
    assert mini.get_latent_representation().shape == full.get_latent_representation().shape
    assert mini.get_soft_assignment().shape == full.get_soft_assignment().shape
    assert mini._run["batches"]["n_batches"] == 3
    assert full._run["batches"]["n_batches"] == 1
    adata = prepared.copy()
    mini.annotate(adata)
    assert adata.uns["scdsec"]["batches"]["n_parts"] == 12
    assert adata.uns["scdsec"]["params"]["train"]["batch_size"] == 100


def test_minibatch_training_is_reproducible(prepared):
    runs = []
    for seed in (2, 2, 5):
        model = SCDSEC(prepared, 3, seed=seed, **TINY)
        model.train(device="cpu", batch_size=100, threads=1, **SHORT)
        runs.append(model.get_latent_representation())
    assert np.array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


@pytest.mark.gpu
def test_minibatch_training_on_a_gpu_matches_the_cpu_runs_shapes(prepared):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = SCDSEC(prepared.copy(), 3, seed=0, **TINY)
    model.train(device="cuda", batch_size=100, parts_per_batch=4, **SHORT)  # prefetching batches
    assert model._run["device"].startswith("cuda") and model._run["batches"]["n_batches"] == 3
    assert model.predict().shape == (prepared.n_obs,)
    assert np.isfinite(model.history["total"]).all()
