"""The batch as a covariate of the expression decoder (batch_key), and the graph's representation
as the PCA block of the centres' start."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.cluster import KMeans

from scdsec import InputError, pp, tl
from scdsec.model import SCDSEC
from scdsec.model._data import CellBatches, read_batch_codes, read_cells
from scdsec.model._modules import ExpressionDecoder, SCDSECModule
from scdsec.simulate import simulate_counts

TINY = {"dims": (32, 16, 4)}
SHORT = {"pretrain_epochs": 3, "epochs": 3, "threads": 1}
DONORS = np.array(["b", "a", "c"])  # not sorted: the model sorts them


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared():
    """200 simulated cells of 3 types, prepared, with three donors in obs['donor']."""
    counts = simulate_counts(200, 200, 3, seed=0, separation=0.8)
    adata = pp.prepare(
        counts, normalize_params={"n_top_genes": 100}, graph={"n_neighbors": 10, "n_pcs": 10}
    )
    adata.obs["donor"] = pd.Categorical(DONORS[np.arange(adata.n_obs) % 3])
    return adata


def _linear_inputs(decoder: ExpressionDecoder) -> list[int]:
    layers = [m for m in decoder.hidden if isinstance(m, torch.nn.Linear)]
    heads = [decoder.reconstruction, decoder.mean, decoder.dispersion, decoder.dropout]
    return [layer.in_features for layer in [*layers, *heads]]


# ---------------------------------------------------------------- the network


@pytest.mark.parametrize(
    ("batch_key", "covariate", "extra"),
    [(None, True, 0), ("donor", True, 3), ("donor", False, 0), (None, False, 0)],
)
def test_decoder_inputs_grow_by_the_batches_only_with_key_and_covariate(
    prepared, batch_key, covariate, extra
):
    plain = SCDSEC(prepared, 3, seed=0, **TINY)
    model = SCDSEC(prepared, 3, seed=0, batch_key=batch_key, batch_covariate=covariate, **TINY)
    widths = _linear_inputs(model.module.decoder)
    assert widths == [4 + extra, 16 + extra, *[32 + extra] * 4]
    assert widths == [w + extra for w in _linear_inputs(plain.module.decoder)]
    # the encoder never sees the batch
    for name, tensor in plain.module.encoder.state_dict().items():
        assert model.module.encoder.state_dict()[name].shape == tensor.shape


def test_every_decoder_layer_and_head_reads_the_one_hot_batch():
    torch.manual_seed(0)
    decoder = ExpressionDecoder(4, (8, 16), 12, n_batches=3)
    z = torch.randn(30, 4)
    codes = torch.arange(30) % 3
    seen = []
    linears = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    for layer in linears:
        layer.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    out = decoder(z, torch.ones(30), codes)
    assert len(seen) == len(linears) == 6  # 2 hidden layers, 4 heads
    one_hot = torch.nn.functional.one_hot(codes, 3).float()
    for inputs in seen:
        assert torch.equal(inputs[:, -3:], one_hot)
    assert torch.equal(seen[0][:, :4], z)
    # the batch changes what is decoded from the same z, and every weight gets a gradient
    other = decoder(z, torch.ones(30), (codes + 1) % 3)
    assert not torch.allclose(out.mean, other.mean)
    sum(t.sum() for t in out).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())
    with pytest.raises(ValueError, match="3 batches"):
        decoder(z, torch.ones(30))


def test_without_a_batch_the_network_and_its_initialisation_are_unchanged():
    def state(**kwargs):
        torch.manual_seed(7)
        return SCDSECModule(40, 3, dims=(32, 16, 4), **kwargs).state_dict()

    reference = state()
    for kwargs in ({"n_batches": 0}, {"batch_covariate": False, "n_batches": 3}):
        other = state(**kwargs)
        assert list(other) == list(reference)
        assert all(torch.equal(other[name], reference[name]) for name in reference)
    assert not torch.equal(
        state(n_batches=2)["decoder.mean.weight"], reference["decoder.mean.weight"]
    )


def test_a_batch_key_without_the_covariate_trains_exactly_as_no_batch_key(prepared):
    runs = []
    for kwargs in ({}, {"batch_key": "donor", "batch_covariate": False}):
        model = SCDSEC(prepared.copy(), 3, seed=0, **TINY, **kwargs)
        model.train(device="cpu", **SHORT)
        runs.append((model.predict(), model.get_latent_representation()))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1])


# ---------------------------------------------------------------- the batch column


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda obs: obs.drop(columns="donor"), r"obs has no column 'donor'"),
        (
            lambda obs: obs.assign(
                donor=obs["donor"].astype(object).where(obs.index != obs.index[5])
            ),
            r"obs\['donor'\] has no batch for 1 of",
        ),
        (lambda obs: obs.assign(donor="a"), r"obs\['donor'\] has one value \('a'\)"),
    ],
)
def test_a_bad_batch_column_is_refused_naming_it(prepared, spoil, message):
    adata = prepared.copy()
    adata.obs = spoil(adata.obs)
    with pytest.raises(InputError, match=message):
        SCDSEC(adata, 3, batch_key="donor", **TINY)
    with pytest.raises(InputError, match=message):
        tl.cluster(adata, 3, batch_key="donor", params={"model": {"dims": [8, 4]}})


def test_batch_codes_follow_the_sorted_strings_of_any_column():
    adata = ad.AnnData(np.zeros((5, 2), dtype=np.float32))
    adata.obs["plate"] = [3, 1, 3, 2, 1]  # integers are read as strings
    codes, categories = read_batch_codes(adata, "plate")
    assert categories == ["1", "2", "3"]
    assert codes.tolist() == [2, 0, 2, 1, 0] and codes.dtype == np.int64
    codes, _ = read_batch_codes(adata, "plate", ["0", "1", "2", "3"])
    assert codes.tolist() == [3, 1, 3, 2, 1]
    with pytest.raises(InputError, match=r"not trained on: \['3'\]"):
        read_batch_codes(adata, "plate", ["1", "2"])


def test_new_cells_need_the_models_batch_column_and_known_batches(prepared):
    model = SCDSEC(prepared, 3, seed=0, batch_key="donor", **TINY)
    model.train(device="cpu", **SHORT)
    assert model.batch_categories == ["a", "b", "c"]
    # the encoder does not read the batch: other known batches give the same Z
    swapped = prepared.copy()
    swapped.obs["donor"] = swapped.obs["donor"].map({"a": "b", "b": "c", "c": "a"})
    assert np.array_equal(
        model.get_latent_representation(swapped), model.get_latent_representation()
    )
    without = prepared.copy()
    del without.obs["donor"]
    with pytest.raises(InputError, match=r"obs has no column 'donor'"):
        model.predict(without)
    unknown = prepared.copy()
    unknown.obs["donor"] = unknown.obs["donor"].astype(str).replace("c", "d")
    with pytest.raises(InputError, match=r"not trained on: \['d'\]"):
        model.annotate(unknown)


# ---------------------------------------------------------------- training and records


@pytest.mark.parametrize("batch_size", ["full", 50])
def test_training_with_a_batch_key_on_full_and_mini_batches(prepared, batch_size, tmp_path):
    model = SCDSEC(prepared.copy(), 3, seed=0, batch_key="donor", **TINY)
    checkpoint = tmp_path / "run.pt"  # its fingerprint holds the batches
    model.train(
        device="cpu", batch_size=batch_size, parts_per_batch=2, checkpoint=checkpoint, **SHORT
    )
    assert not checkpoint.exists()  # removed once training ended
    assert model._run["batches"]["n_batches"] == (1 if batch_size == "full" else 4)
    history = model.history
    assert np.isfinite(history["total"]).all() and len(history) >= 6
    assert set(model.predict()) <= {0, 1, 2}
    # each batch of cells carries the batch codes of its own cells
    data = read_cells(prepared, None, True, batch_key="donor")
    generator = torch.Generator().manual_seed(0)
    batches = CellBatches(data, batch_size, 2, torch.device("cpu"), generator)
    for batch in batches.epoch():
        assert batch.batch.dtype == torch.int64
        assert np.array_equal(batch.batch.numpy(), data.batch[batch.index.numpy()])


def test_the_batch_is_recorded_and_saved_and_old_checkpoints_load(prepared, tmp_path):
    adata = prepared.copy()
    model = tl.cluster(
        adata,
        3,
        params={"model": {"dims": [32, 16, 4]}, "train": {"pretrain_epochs": 3, "epochs": 3}},
        batch_key="donor",
        device="cpu",
        threads=1,
    )
    record = adata.uns["scdsec"]
    assert record["batch_key"] == "donor" and record["batch_categories"] == ["a", "b", "c"]
    assert record["params"]["model"]["batch_covariate"] is True
    adata.write_h5ad(tmp_path / "annotated.h5ad")
    assert ad.read_h5ad(tmp_path / "annotated.h5ad").uns["scdsec"]["batch_key"] == "donor"

    model.save(tmp_path / "batch")
    loaded = SCDSEC.load(tmp_path / "batch", adata=prepared)
    assert loaded.batch_key == "donor" and loaded.batch_categories == ["a", "b", "c"]
    assert loaded.module.decoder.n_batches == 3
    assert np.array_equal(loaded.predict(), model.predict())

    # a checkpoint written before batch keys existed: no batch fields, no batch_covariate
    plain = SCDSEC(prepared, 3, seed=0, **TINY).train(device="cpu", **SHORT)
    plain.save(tmp_path / "old")
    meta_file = tmp_path / "old" / "model.json"
    meta = json.loads(meta_file.read_text())
    del meta["batch_key"], meta["batch_categories"], meta["params"]["model"]["batch_covariate"]
    meta_file.write_text(json.dumps(meta))
    old = SCDSEC.load(tmp_path / "old")
    assert old.batch_key is None and old.module.decoder.n_batches == 0
    assert np.array_equal(old.predict(prepared), plain.predict())

    no_batch = prepared.copy()
    tl.cluster(no_batch, 3, params={"model": {"dims": [8, 4]}, "train": {"epochs": 1}}, threads=1)
    assert no_batch.uns["scdsec"]["batch_key"] is None
    assert "batch_categories" not in no_batch.uns["scdsec"]


# ---------------------------------------------------------------- the PCA block of the start


def test_center_init_reads_the_representation_the_graph_was_built_on(prepared):
    rng = np.random.default_rng(0)
    corrected = (
        rng.normal(size=(prepared.n_obs, 5)) + 4.0 * (np.arange(prepared.n_obs) % 3)[:, None]
    )
    adata = prepared.copy()
    adata.obsm["X_pca_harmony"] = corrected
    adata.uns["scdsec_graph"] = {**adata.uns["scdsec_graph"], "use_rep": "X_pca_harmony"}
    model = SCDSEC(adata, 3, seed=0, batch_key="donor", **TINY)
    model.train(device="cpu", pretrain_epochs=2, epochs=0, center_init="pca", threads=1)
    kmeans = KMeans(3, n_init=model.params.train.kmeans_n_init, random_state=0)
    expected = kmeans.fit_predict(corrected)
    z = model.get_latent_representation()
    means = np.stack([z[expected == c].mean(axis=0) for c in range(3)])
    centers = model.module.assignment.centers.detach().numpy()
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731 (centres are renumbered by size)
    assert np.allclose(order(centers), order(means), atol=1e-5)
    # the graph's representation is not silently replaced by a PCA of X
    del adata.obsm["X_pca_harmony"]
    model = SCDSEC(adata, 3, seed=0, **TINY)
    with pytest.raises(InputError, match=r"obsm\['X_pca_harmony'\] is missing"):
        model.train(device="cpu", pretrain_epochs=1, epochs=0, center_init="both", threads=1)
