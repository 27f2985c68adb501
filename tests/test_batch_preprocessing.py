"""Batch-aware preprocessing: the batch key check, highly variable genes per batch, Harmony on
the PCs of the graph, and the baselines' integrated pipeline (issue 25)."""

from __future__ import annotations

import sys
import types

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from scdsec import InputError, baselines
from scdsec._checks import check_batch_key
from scdsec.graph import (
    build_knn_graph,
    harmony_correct,
    knn_adjacency,
    knn_indices,
    pca,
)
from scdsec.preprocessing import _cell_ranger_hvg, normalize, qc_filter

FLAVORS = ("seurat", "cell_ranger", "seurat_v3")


def _cross_batch_fraction(adjacency: sp.spmatrix, batches: np.ndarray) -> float:
    """The fraction of a graph's edges that join cells of different batches."""
    a = sp.coo_matrix(adjacency)
    return float((batches[a.row] != batches[a.col]).mean())


def _shifted_groups(n_per_group: int = 40, n_features: int = 30, shift: float = 2.0, seed=0):
    """Three tight groups of cells in each of two batches, batch "b" shifted by ``shift``
    along every feature: (coordinates, groups, batches)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, size=(3, n_features))
    groups = np.tile(np.repeat(np.arange(3), n_per_group), 2)
    batches = np.repeat(["a", "b"], 3 * n_per_group)
    x = centres[groups] + rng.normal(0, 1, size=(len(groups), n_features))
    x[batches == "b"] += shift
    return x.astype(np.float32), groups, batches


@pytest.fixture(scope="module")
def two_batches() -> ad.AnnData:
    """300 QC'd cells × ≤ 200 genes, 3 types, in batches "a" and "b" (every other cell);
    in batch "b" the first 20 genes hold 4 times the counts."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(300, 200, 3, seed=1, separation=0.8)
    batch = np.where(np.arange(adata.n_obs) % 2, "b", "a")
    x = adata.X.toarray()
    x[np.ix_(batch == "b", np.arange(20))] *= 4
    adata.X = sp.csr_matrix(x)
    adata.obs["batch"] = batch
    return qc_filter(adata)


# --- the batch key ----------------------------------------------------------------------


def test_check_batch_key_gives_sorted_string_categories():
    obs = pd.DataFrame({"donor": [3, 1, 10, 1], "plate": ["p2", "p1", "p2", "p1"]})
    batches = check_batch_key(obs, "donor")
    assert isinstance(batches, pd.Categorical)
    assert list(batches.categories) == ["1", "10", "3"]
    assert list(batches.astype(str)) == ["3", "1", "10", "1"]
    # a categorical column with an unused category: only the batches present
    obs["plate"] = pd.Categorical(obs["plate"], categories=["p9", "p2", "p1"])
    assert list(check_batch_key(obs, "plate").categories) == ["p1", "p2"]


def test_check_batch_key_refuses_missing_incomplete_and_one_valued_columns():
    obs = pd.DataFrame({"donor": ["a", "a", "a"], "plate": ["p1", None, "p2"]})
    with pytest.raises(InputError, match=r"obs has no column 'sample'.*'donor', 'plate'"):
        check_batch_key(obs, "sample")
    with pytest.raises(InputError, match=r"obs\['plate'\] has no batch for 1 of 3 cells"):
        check_batch_key(obs, "plate")
    with pytest.raises(
        InputError,
        match=r"^obs\['donor'\] has one value \('a'\): a batch key needs at least 2 batches",
    ):
        check_batch_key(obs, "donor")
    obs["plate"] = ["p1", np.nan, "p2"]
    with pytest.raises(InputError, match="no batch for 1 of 3"):
        check_batch_key(obs, "plate")
    obs["plate"] = ["p1", "", "p2"]
    with pytest.raises(InputError, match="no batch for 1 of 3"):
        check_batch_key(obs, "plate")


# --- Harmony ----------------------------------------------------------------------------


def test_harmony_returns_cells_by_pcs_and_keeps_each_cells_row():
    x, groups, batches = _shifted_groups(n_per_group=30, n_features=7)
    z = harmony_correct(x, batches, seed=0)
    assert z.shape == x.shape == (180, 7)
    assert z.dtype == np.float32
    # row i is still cell i: the corrected rows fall into the cells' own groups
    from sklearn.cluster import KMeans

    found = KMeans(3, n_init=10, random_state=0).fit_predict(z)
    assert adjusted_rand_score(groups, found) > 0.9
    # the batch offset (2 along every feature) shrinks
    before = x[batches == "b"].mean(axis=0) - x[batches == "a"].mean(axis=0)
    after = z[batches == "b"].mean(axis=0) - z[batches == "a"].mean(axis=0)
    assert np.linalg.norm(after) < 0.25 * np.linalg.norm(before)
    np.testing.assert_array_equal(z, harmony_correct(x, batches, seed=0))


def test_harmony_on_as_many_pcs_as_cells_corrects_the_cells():
    """harmonypy tells cells × PCs from PCs × cells by the side that matches the cells; with
    both sides alike the cells must still be the rows."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 20))
    batches = np.repeat(["a", "b"], 10)
    x[batches == "b", :] += 8.0  # shifted cells (rows); a column shift would be the wrong way
    z = harmony_correct(x, batches, seed=0)
    before = np.abs(x[batches == "b"].mean(0) - x[batches == "a"].mean(0)).mean()
    after = np.abs(z[batches == "b"].mean(0) - z[batches == "a"].mean(0)).mean()
    assert before > 7.0 and after < 0.25 * before


def test_graph_on_harmony_joins_the_batches_and_keeps_the_groups():
    x, groups, batches = _shifted_groups()
    adata = ad.AnnData(x, obs=pd.DataFrame({"batch": batches}, index=map(str, range(len(x)))))
    plain = build_knn_graph(adata, n_neighbors=10, n_pcs=10)
    corrected = build_knn_graph(adata, n_neighbors=10, n_pcs=10, batch_key="batch")
    assert _cross_batch_fraction(plain.obsp["knn"], batches) < 0.02
    assert _cross_batch_fraction(corrected.obsp["knn"], batches) > 0.3
    # the groups stay apart: (almost) every edge joins cells of one group
    assert _cross_batch_fraction(corrected.obsp["knn"], groups.astype(str)) < 0.02
    # X_pca stays the plain PCA; the graph is on the corrected copy
    np.testing.assert_array_equal(corrected.obsm["X_pca"], plain.obsm["X_pca"])
    assert corrected.obsm["X_pca_harmony"].dtype == np.float32
    assert corrected.obsm["X_pca_harmony"].shape == corrected.obsm["X_pca"].shape
    assert corrected.uns["scdsec_graph"]["use_rep"] == "X_pca_harmony"
    assert corrected.uns["scdsec_graph"]["batch_key"] == "batch"
    assert corrected.uns["scdsec_graph"]["batch_correction"] == "harmony"
    again = build_knn_graph(adata, n_neighbors=10, n_pcs=10, batch_key="batch", seed=0)
    assert (again.obsp["knn"] != corrected.obsp["knn"]).nnz == 0


def test_graph_without_a_batch_key_is_todays_graph(two_batches):
    normalized = normalize(two_batches, n_top_genes=100)
    out = build_knn_graph(normalized, n_neighbors=10, n_pcs=15)
    explicit = build_knn_graph(
        normalized, n_neighbors=10, n_pcs=15, batch_key=None, batch_correction="none"
    )
    # today's graph, step by step
    x_pca = pca(normalized.X, 15, seed=0)
    a = knn_adjacency(knn_indices(x_pca, 10, method="auto", seed=0))
    for graph in (out, explicit):
        assert set(graph.obsm) == {"X_pca"}
        np.testing.assert_array_equal(graph.obsm["X_pca"], x_pca)
        assert (graph.obsp["knn"] != a).nnz == 0
        assert graph.uns["scdsec_graph"] == {
            "n_neighbors": 10,
            "n_pcs": 15,
            "method": "exact",
            "n_edges": a.nnz // 2,
            "seed": 0,
            "use_rep": "X_pca",
        }


def test_graph_with_a_batch_key_and_no_correction_records_the_batches_only(two_batches):
    normalized = normalize(two_batches, n_top_genes=100)
    plain = build_knn_graph(normalized, n_neighbors=10, n_pcs=15)
    out = build_knn_graph(
        normalized, n_neighbors=10, n_pcs=15, batch_key="batch", batch_correction="none"
    )
    assert (out.obsp["knn"] != plain.obsp["knn"]).nnz == 0
    assert set(out.obsm) == {"X_pca"}
    assert out.uns["scdsec_graph"]["use_rep"] == "X_pca"
    assert out.uns["scdsec_graph"]["batch_correction"] == "none"


def test_graph_refuses_bad_batch_settings(two_batches):
    normalized = normalize(two_batches, n_top_genes=100)
    with pytest.raises(InputError, match="obs has no column 'donor'"):
        build_knn_graph(normalized, n_neighbors=10, batch_key="donor")
    one = normalized.copy()
    one.obs["batch"] = "a"
    with pytest.raises(InputError, match=r"one value \('a'\)"):
        build_knn_graph(one, n_neighbors=10, batch_key="batch")
    with pytest.raises(InputError, match="graph.batch_correction = 'combat'"):
        build_knn_graph(normalized, n_neighbors=10, batch_key="batch", batch_correction="combat")


# --- highly variable genes per batch ----------------------------------------------------


def _with_batch_specific_genes(
    n_specific: int = 5, mean: float = 30.0, seed: int = 0
) -> tuple[ad.AnnData, list]:
    """240 cells × 150 genes in two batches; genes g0… are expressed (Poisson, ``mean``) in
    batch "b" only: variable between the batches, not within either."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(240, 150, 3, seed=seed, separation=1.0)
    adata.var_names = [f"g{i}" for i in range(adata.n_vars)]
    batch = np.repeat(["a", "b"], 120)
    rng = np.random.default_rng(seed)
    x = adata.X.toarray()
    x[:, :n_specific] = 0
    x[batch == "b", :n_specific] = rng.poisson(mean, size=(120, n_specific))
    adata.X = sp.csr_matrix(x)
    adata.obs["batch"] = batch
    return adata, [f"g{i}" for i in range(n_specific)]


# cell_ranger ranks a gene against genes of similar mean: at a mean of 30 the batch-specific
# genes share the top bin with the most variable genes, at 5 they stand out in theirs.
@pytest.mark.parametrize(
    ("flavor", "mean"), [("seurat", 30), ("cell_ranger", 5), ("seurat_v3", 30)]
)
def test_hvgs_per_batch_leave_out_genes_that_only_differ_between_batches(flavor, mean):
    adata, specific = _with_batch_specific_genes(mean=mean)
    pooled = normalize(adata, n_top_genes=40, flavor=flavor)
    per_batch = normalize(
        adata, n_top_genes=40, flavor=flavor, batch_key="batch", hvg_per_batch=True
    )
    off = normalize(adata, n_top_genes=40, flavor=flavor, batch_key="batch", hvg_per_batch=False)
    assert set(specific) <= set(pooled.var_names)
    assert not set(specific) & set(per_batch.var_names)
    assert per_batch.n_vars == 40
    assert list(off.var_names) == list(pooled.var_names)
    np.testing.assert_array_equal(off.X, pooled.X)
    assert per_batch.uns["scdsec_preprocess"]["batch_key"] == "batch"
    assert per_batch.uns["scdsec_preprocess"]["hvg_per_batch"] is True
    assert off.uns["scdsec_preprocess"]["hvg_per_batch"] is False


def test_hvgs_per_batch_are_scanpys(two_batches):
    import scanpy as sc

    out = normalize(two_batches, n_top_genes=60, batch_key="batch", hvg_per_batch=True)
    everything = normalize(two_batches, n_top_genes=10_000)
    probe = ad.AnnData(
        everything.layers["log1p"].copy(),
        obs=two_batches.obs[["batch"]].astype("category"),
        var=pd.DataFrame(index=everything.var_names),
    )
    sc.pp.highly_variable_genes(probe, n_top_genes=60, flavor="seurat", batch_key="batch")
    assert list(out.var_names) == list(probe.var_names[probe.var["highly_variable"]])


def test_normalize_without_a_batch_key_is_unchanged(two_batches):
    plain = normalize(two_batches, n_top_genes=60)
    off = normalize(two_batches, n_top_genes=60, hvg_per_batch=False)  # acts only with a key
    assert list(plain.var_names) == list(off.var_names)
    np.testing.assert_array_equal(plain.X, off.X)
    assert "batch_key" not in plain.uns["scdsec_preprocess"]
    assert "hvg_per_batch" not in plain.uns["scdsec_preprocess"]
    # the batch key changes the genes, not the size factors nor how they are scaled
    batched = normalize(two_batches, n_top_genes=60, batch_key="batch", hvg_per_batch=True)
    np.testing.assert_array_equal(
        batched.obs["scdsec_size_factor"], plain.obs["scdsec_size_factor"]
    )
    assert set(batched.var_names) != set(plain.var_names)


def test_cell_ranger_per_batch_is_scanpys_when_the_bins_are_distinct(two_batches):
    import scanpy as sc

    lognorm = normalize(two_batches, n_top_genes=10_000).layers["log1p"]
    batches = check_batch_key(two_batches.obs, "batch")
    probe = ad.AnnData(
        lognorm.copy(), obs=pd.DataFrame({"batch": batches}, index=two_batches.obs_names)
    )
    sc.pp.highly_variable_genes(probe, n_top_genes=50, flavor="cell_ranger", batch_key="batch")
    np.testing.assert_array_equal(
        _cell_ranger_hvg(lognorm, 50, batches), probe.var["highly_variable"]
    )


def test_cell_ranger_per_batch_merges_coinciding_bins(mostly_zero_genes):
    """In each batch more than 5% of the genes share a mean: scanpy refuses them."""
    import scanpy as sc

    adata = mostly_zero_genes.copy()
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2, "b", "a")
    out = normalize(
        adata, n_top_genes=150, flavor="cell_ranger", batch_key="batch", hvg_per_batch=True
    )
    assert out.n_vars == 150
    assert np.isfinite(out.X).all()
    lognorm = normalize(adata, n_top_genes=10_000).layers["log1p"]
    probe = ad.AnnData(
        lognorm.copy(), obs=adata.obs[["batch"]].astype("category").set_index(adata.obs_names)
    )
    with pytest.raises(ValueError, match="Bin edges must be unique"):
        sc.pp.highly_variable_genes(probe, n_top_genes=150, flavor="cell_ranger", batch_key="batch")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_batch_of_one_cell_is_refused_by_name(two_batches, flavor):
    adata = two_batches.copy()
    adata.obs["batch"] = adata.obs["batch"].astype(str)
    adata.obs.iloc[7, adata.obs.columns.get_loc("batch")] = "lonely"
    with pytest.raises(InputError, match=r"batch 'lonely' of obs\['batch'\] has 1 cell:") as err:
        normalize(adata, n_top_genes=60, flavor=flavor, batch_key="batch", hvg_per_batch=True)
    assert "normalize.hvg_per_batch: false" in str(err.value)
    # pooled ranking accepts it
    assert normalize(adata, n_top_genes=60, flavor=flavor, batch_key="batch", hvg_per_batch=False)


def test_seurat_v3_on_a_batch_it_cannot_fit_names_the_batch(two_batches):
    """Two cells give the genes few distinct means: seurat_v3's loess is singular there (the
    batch has enough cells for a variance, so only scanpy's failure can tell)."""
    adata = two_batches.copy()
    adata.obs["batch"] = adata.obs["batch"].astype(str)
    adata.obs.iloc[:2, adata.obs.columns.get_loc("batch")] = "tiny"
    with pytest.raises(
        InputError, match=r"batch 'tiny' of obs\['batch'\] has 2 cells: .*seurat_v3.*scanpy: "
    ):
        normalize(adata, n_top_genes=60, flavor="seurat_v3", batch_key="batch", hvg_per_batch=True)


def test_normalize_refuses_a_missing_or_one_valued_batch_column(two_batches):
    with pytest.raises(InputError, match="obs has no column 'donor'"):
        normalize(two_batches, batch_key="donor")
    one = two_batches.copy()
    one.obs["batch"] = "a"
    with pytest.raises(InputError, match="at least 2 batches"):
        normalize(one, batch_key="batch", hvg_per_batch=False)


# --- baselines --------------------------------------------------------------------------

STD = {"n_top_genes": 80, "n_pcs": 10}


def test_baselines_with_a_batch_key_cluster_the_corrected_pcs(two_batches):
    standard = baselines.standard_pipeline(two_batches, n_top_genes=80, n_pcs=10, seed=0)
    batched = baselines.standard_pipeline(
        two_batches, n_top_genes=80, n_pcs=10, seed=0, batch_key="batch"
    )
    assert "X_pca_harmony" not in standard.obsm and standard.uns["scdsec_use_rep"] == "X_pca"
    assert batched.uns["scdsec_use_rep"] == "X_pca_harmony"
    assert batched.uns["neighbors"]["params"]["use_rep"] == "X_pca_harmony"
    assert "_scdsec_batch" not in batched.obs
    batches = two_batches.obs["batch"].to_numpy()
    assert _cross_batch_fraction(batched.obsp["connectivities"], batches) > (
        _cross_batch_fraction(standard.obsp["connectivities"], batches) + 0.05
    )

    result = baselines.run_baseline(
        "kmeans_pca", two_batches, n_clusters=3, seed=0, params=STD, batch_key="batch"
    )
    np.testing.assert_array_equal(result.embedding, batched.obsm["X_pca_harmony"])
    assert result.info["use_rep"] == "X_pca_harmony"
    assert result.info["batch_key"] == "batch" and result.info["batch_correction"] == "harmony"
    leiden = baselines.run_baseline("leiden", two_batches, seed=0, params=STD, batch_key="batch")
    assert leiden.status == "ok" and leiden.info["use_rep"] == "X_pca_harmony"
    none = baselines.run_baseline(
        "kmeans_pca",
        two_batches,
        n_clusters=3,
        seed=0,
        params=STD,
        batch_key="batch",
        batch_correction="none",
    )
    assert none.info["use_rep"] == "X_pca"
    np.testing.assert_array_equal(none.embedding, batched.obsm["X_pca"])


def test_baselines_without_a_batch_key_are_unchanged(two_batches):
    result = baselines.run_baseline("kmeans_pca", two_batches, n_clusters=3, seed=0, params=STD)
    standard = baselines.standard_pipeline(two_batches, n_top_genes=80, n_pcs=10, seed=0)
    np.testing.assert_array_equal(result.embedding, standard.obsm["X_pca"])
    assert not {"batch_key", "batch_correction", "use_rep"} & set(result.info)


def test_baselines_refuse_a_bad_batch_key(two_batches):
    with pytest.raises(InputError, match="obs has no column 'donor'"):
        baselines.run_baseline("leiden", two_batches, seed=0, params=STD, batch_key="donor")
    with pytest.raises(InputError, match="batch_correction = 'combat'"):
        baselines.run_baseline(
            "leiden", two_batches, seed=0, params=STD, batch_key="batch", batch_correction="combat"
        )


def test_baseline_step_records_the_batch_key(two_batches, tmp_path):
    path = tmp_path / "counts.h5ad"
    two_batches.write_h5ad(path)
    baselines.baseline_step(
        path,
        tmp_path / "out",
        method="kmeans_pca",
        n_clusters=3,
        seed=0,
        params=STD,
        batch_key="batch",
    )
    written = ad.read_h5ad(tmp_path / "out" / "kmeans_pca.h5ad")
    assert written.uns["kmeans_pca"]["batch_key"] == "batch"
    assert written.uns["kmeans_pca"]["use_rep"] == "X_pca_harmony"
    params = written.uns["scdsec_steps"]["kmeans_pca"]["params"]
    assert params["batch_key"] == "batch" and params["batch_correction"] == "harmony"


class _FakeSCVI:
    """Stands in for scvi.model.SCVI: records what setup_anndata was given."""

    setup: dict = {}

    @classmethod
    def setup_anndata(cls, adata, **kwargs):
        cls.setup = {"kwargs": kwargs, "obs": adata.obs.copy(), "n_vars": adata.n_vars}

    def __init__(self, adata, n_latent=10):
        self.n_obs, self.n_latent = adata.n_obs, n_latent
        self.history = {}

    def train(self, **kwargs):
        pass

    def get_latent_representation(self):
        return np.zeros((self.n_obs, self.n_latent))


@pytest.fixture
def fake_scvi(monkeypatch):
    scvi = types.ModuleType("scvi")
    scvi.settings = types.SimpleNamespace(seed=None)
    scvi.model = types.SimpleNamespace(SCVI=_FakeSCVI)
    logger = types.ModuleType("scvi.train._logger")
    logger.SimpleLogger = lambda save_dir: None
    for name, module in {
        "scvi": scvi,
        "scvi.train": types.ModuleType("scvi.train"),
        "scvi.train._logger": logger,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(baselines, "_cuda_available", lambda: False)
    return _FakeSCVI


def test_scvi_gets_the_batch_as_its_covariate(two_batches, fake_scvi):
    latent, info = baselines.scvi_latent(two_batches, n_top_genes=80, batch_key="batch")
    kwargs = fake_scvi.setup["kwargs"]
    assert kwargs["layer"] == "counts" and kwargs["batch_key"] is not None
    registered = fake_scvi.setup["obs"][kwargs["batch_key"]].astype(str).to_numpy()
    np.testing.assert_array_equal(registered, two_batches.obs["batch"].to_numpy())
    assert fake_scvi.setup["n_vars"] == 80
    assert info["n_batches"] == 2 and info["batch_covariate"] is True
    assert latent.shape == (two_batches.n_obs, 10)

    baselines.scvi_latent(two_batches, n_top_genes=80)
    assert fake_scvi.setup["kwargs"] == {"layer": "counts", "batch_key": None}
    baselines.scvi_latent(two_batches, n_top_genes=80, batch_key="batch", batch_correction="none")
    assert fake_scvi.setup["kwargs"]["batch_key"] is None


def test_prepare_with_a_batch_key_passes_it_to_both_steps():
    """``scdsec.pp.prepare(adata, batch_key=)`` is the two steps given the key: the genes
    ranked as the normalize settings say, Harmony's PCs under ``X_pca_harmony`` and the graph
    on them."""
    from scdsec import pp
    from scdsec.simulate import simulate_counts

    raw = simulate_counts(300, 200, 3, seed=0, batches=2)
    prepared = pp.prepare(
        raw, batch_key="batch", normalize_params={"n_top_genes": 100}, graph={"n_neighbors": 10}
    )
    assert prepared.uns["scdsec_preprocess"]["batch_key"] == "batch"
    assert prepared.uns["scdsec_preprocess"]["hvg_per_batch"] is False  # the default
    assert prepared.uns["scdsec_graph"]["use_rep"] == "X_pca_harmony"
    assert prepared.obsm["X_pca_harmony"].shape == prepared.obsm["X_pca"].shape
    plain = pp.prepare(raw, normalize_params={"n_top_genes": 100}, graph={"n_neighbors": 10})
    assert "X_pca_harmony" not in plain.obsm and "batch_key" not in plain.uns["scdsec_preprocess"]


def test_cluster_warns_when_its_batch_key_is_not_the_graphs(caplog):
    """A graph corrected for one batch column and a model given another key (or none) is
    logged as a warning naming both; the same key is silent."""
    from scdsec import pp, tl
    from scdsec.simulate import simulate_counts

    raw = simulate_counts(200, 150, 3, seed=0, batches=2)
    prepared = pp.prepare(
        raw, batch_key="batch", normalize_params={"n_top_genes": 80}, graph={"n_neighbors": 8}
    )
    short = {"model": {"dims": [16, 4]}, "train": {"pretrain_epochs": 2, "epochs": 2}}
    with caplog.at_level("WARNING", logger="scdsec"):
        tl.cluster(prepared, 3, params=short)
    assert "batch_key 'batch'" in caplog.text and "batch_key=None" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="scdsec"):
        tl.cluster(prepared, 3, params=short, batch_key="batch")
    assert "batch_key" not in caplog.text
