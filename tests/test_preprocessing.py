"""Properties of the cell data processor (docs/method.md §1)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from conftest import ROOT
from scdsec import InputError
from scdsec.preprocessing import normalize, qc_filter, size_factors

SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
#: normalize.flavor values the config schema allows.
FLAVORS = SCHEMA["properties"]["normalize"]["properties"]["flavor"]["enum"]


def test_qc_drops_genes_under_one_percent_and_empty_cells(small_counts):
    adata = small_counts.copy()
    x = adata.X.tolil()
    x[:, 20] = 0
    x[:3, 20] = 1  # detected in 3 of 400 cells (< 1%)
    x[:5, 21] = 0
    x[5:, 21] = 0
    x[:4, 21] = 2  # 4 of 400 cells: exactly 1%, kept
    x[7, :] = 0  # an empty cell
    adata.X = x.tocsr()
    before = adata.X.copy()

    out = qc_filter(adata, min_cells_fraction=0.01)

    detected = np.asarray((out.X > 0).sum(axis=0)).ravel()
    assert (detected >= 0.01 * out.n_obs).all()
    assert adata.var_names[20] not in out.var_names
    assert adata.var_names[21] in out.var_names
    assert adata.obs_names[7] not in out.obs_names
    assert (np.asarray(out.X.sum(axis=1)).ravel() > 0).all()
    assert out.uns["scdsec_qc"]["cells_removed_empty"] == 1
    assert (adata.X != before).nnz == 0, "the input must not be modified"
    # the counts that are kept are unchanged
    kept = adata[out.obs_names, out.var_names].X
    assert (out.X != kept).nnz == 0


def test_qc_cell_filters(small_counts):
    adata = small_counts
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    cap = float(np.quantile(totals, 0.9))
    out = qc_filter(adata, max_counts=cap, min_genes=50)
    assert out.obs["scdsec_total_counts"].max() <= cap
    assert out.obs["scdsec_n_genes_by_counts"].min() >= 50
    rep = out.uns["scdsec_qc"]
    assert rep["cells_removed_max_counts"] >= int(0.09 * adata.n_obs)
    assert rep["cells_out"] == out.n_obs


def test_qc_mito_filter_removes_cells_with_many_mito_counts(small_counts):
    adata = small_counts.copy()
    x = adata.X.tolil()
    x[:10, 0] = 10_000  # MT-1 dominates these cells
    adata.X = x.tocsr()
    out = qc_filter(adata, max_mito_fraction=0.5)
    assert not set(adata.obs_names[:10]) & set(out.obs_names)
    assert out.uns["scdsec_qc"]["cells_removed_max_mito_fraction"] == 10


def test_qc_mito_filter_warns_without_mt_genes(small_counts):
    adata = small_counts.copy()
    adata.var_names = [f"g{i}" for i in range(adata.n_vars)]
    with pytest.warns(UserWarning, match="MT-"):
        out = qc_filter(adata, max_mito_fraction=0.1)
    assert out.n_obs == adata.n_obs


def test_size_factors_have_median_one():
    counts = sp.random(101, 50, density=0.3, format="csr", random_state=0) * 10
    sf = size_factors(counts)
    assert np.median(sf) == pytest.approx(1.0)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    np.testing.assert_allclose(sf, totals / np.median(totals))


def test_normalize_outputs(small_counts):
    qc = qc_filter(small_counts)
    out = normalize(qc, n_top_genes=100, clip=3.0)
    assert out.shape == (qc.n_obs, 100)
    assert isinstance(out.X, np.ndarray) and out.X.dtype == np.float32
    assert np.median(out.obs["scdsec_size_factor"]) == pytest.approx(1.0)
    # size factors come from all kept genes, not only the HVGs
    np.testing.assert_allclose(out.obs["scdsec_size_factor"], size_factors(qc.X))
    # raw counts of the kept genes are kept as the ZINB target
    raw = qc[:, out.var_names].X
    assert (out.layers["counts"] != raw).nnz == 0
    # log1p(c / s)
    expected = np.log1p(raw.toarray() / out.obs["scdsec_size_factor"].to_numpy()[:, None])
    np.testing.assert_allclose(out.layers["log1p"].toarray(), expected, rtol=1e-5, atol=1e-6)
    # scaled input: clipped, and (before clipping) zero mean and unit variance
    assert np.abs(out.X).max() <= 3.0 + 1e-6
    unclipped = (expected - out.var["scdsec_mean"].to_numpy()) / out.var["scdsec_std"].to_numpy()
    np.testing.assert_allclose(unclipped.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(unclipped.std(axis=0), 1, atol=1e-3)
    info = out.uns["scdsec_preprocess"]
    assert info["genes"] == list(out.var_names)
    assert info["median_library_size"] == pytest.approx(
        np.median(np.asarray(qc.X.sum(axis=1)).ravel())
    )


def test_normalize_caps_t_at_the_genes_available(small_counts):
    out = normalize(qc_filter(small_counts), n_top_genes=10_000)
    assert out.n_vars == qc_filter(small_counts).n_vars


def test_hvgs_are_the_variable_genes(small_counts):
    """The chosen genes should be enriched for the simulated type markers."""
    out = normalize(qc_filter(small_counts), n_top_genes=50)
    var_chosen = out.layers["log1p"].toarray().var(axis=0).mean()
    all_log = normalize(qc_filter(small_counts), n_top_genes=10_000).layers["log1p"].toarray()
    assert var_chosen > all_log.var(axis=0).mean()


def test_normalize_seurat_v3_runs_on_counts(small_counts):
    out = normalize(qc_filter(small_counts), n_top_genes=80, flavor="seurat_v3")
    assert out.n_vars == 80


# ------------------------------------------------------- genes without counts (case 06)


def _genes_with_counts(adata) -> np.ndarray:
    return np.asarray(adata.X.sum(axis=0)).ravel() > 0


def test_the_case_06_shape_ties_cell_rangers_bins_even_without_the_empty_genes(
    mostly_zero_genes,
):
    """The fixture keeps what broke scanpy: among the genes with counts, more than 5% share one
    mean, so cell_ranger's percentile bin edges coincide (scanpy: "Bin edges must be unique")."""
    import scanpy as sc

    lognorm = normalize(mostly_zero_genes, n_top_genes=10_000).layers["log1p"]
    probe = ad.AnnData(lognorm.copy())
    with pytest.raises(ValueError, match="Bin edges must be unique"):
        sc.pp.highly_variable_genes(probe, n_top_genes=200, flavor="cell_ranger")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_genes_without_counts_never_reach_hvg_selection(mostly_zero_genes, flavor):
    with_counts = _genes_with_counts(mostly_zero_genes)
    assert (~with_counts).sum() >= 400
    qc = qc_filter(mostly_zero_genes, min_cells_fraction=0)
    assert qc.uns["scdsec_qc"]["genes_removed_no_counts"] == (~with_counts).sum()
    assert list(qc.var_names) == list(mostly_zero_genes.var_names[with_counts])
    out = normalize(qc, n_top_genes=200, flavor=flavor)
    assert 200 <= out.n_vars < qc.n_vars  # seurat keeps the genes tied at the cut too
    assert (np.asarray(out.layers["counts"].sum(axis=0)).ravel() > 0).all()
    assert np.isfinite(out.X).all()
    # without QC, normalize leaves the genes without counts out by itself
    direct = normalize(mostly_zero_genes, n_top_genes=200, flavor=flavor)
    assert list(direct.var_names) == list(out.var_names)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_n_top_genes_above_the_genes_with_counts_keeps_those(mostly_zero_genes, flavor):
    out = normalize(mostly_zero_genes, n_top_genes=1000, flavor=flavor)
    assert list(out.var_names) == list(
        mostly_zero_genes.var_names[_genes_with_counts(mostly_zero_genes)]
    )
    assert out.uns["scdsec_preprocess"]["n_top_genes"] == out.n_vars


def test_cell_ranger_with_merged_bins_is_scanpys_when_the_bins_are_distinct(small_counts):
    import scanpy as sc

    from scdsec.preprocessing import _cell_ranger_hvg

    lognorm = normalize(qc_filter(small_counts), n_top_genes=10_000).layers["log1p"]
    probe = ad.AnnData(lognorm.copy())
    sc.pp.highly_variable_genes(probe, n_top_genes=50, flavor="cell_ranger")
    np.testing.assert_array_equal(_cell_ranger_hvg(lognorm, 50), probe.var["highly_variable"])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_genes_a_flavor_cannot_rank_are_one_line_naming_the_keys(flavor):
    """Four genes with the same count in every cell: no flavor can rank them (seurat_v3's loess
    would end the process); the answer is a result or one line naming the settings."""
    x = np.zeros((50, 30), dtype=np.float32)
    x[:, :4] = 1
    try:
        out = normalize(ad.AnnData(sp.csr_matrix(x)), n_top_genes=2, flavor=flavor)
    except InputError as err:
        line = str(err)
        assert "\n" not in line and "kwarg" not in line
        assert f"normalize.flavor = {flavor}" in line and "normalize.n_top_genes = 2" in line
        assert "4 genes with counts in 50 cells" in line
    else:
        assert out.n_vars == 2


def test_counts_all_zero_or_all_filtered_are_one_line_naming_the_counts(small_counts):
    zeros = ad.AnnData(sp.csr_matrix((20, 10), dtype=np.float32))
    with pytest.raises(InputError, match=r"all zero \(20 cells × 10 genes\)"):
        qc_filter(zeros)
    with pytest.raises(InputError, match="0 of 10 genes and 0 of 20 cells have counts"):
        normalize(zeros)
    with pytest.raises(InputError, match=r"qc\.min_genes = 10000 removed 400 cells"):
        qc_filter(small_counts, min_genes=10_000)
