"""Batches in the simulator: absent by default, present, visible, seeded; on the command line."""

from __future__ import annotations

import hashlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scdsec.cli import main
from scdsec.simulate import simulate_counts


def digest(adata) -> str:
    """sha256 of the counts (CSR arrays), the obs table and the names."""
    h = hashlib.sha256()
    x = adata.X.tocsr()
    for arr in (x.data, x.indices, x.indptr):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(adata.obs.astype(str).to_csv().encode())
    h.update("\n".join(adata.var_names).encode())
    return h.hexdigest()


def composition(adata) -> pd.DataFrame:
    """Fraction of each batch's cells in each type (rows: batches)."""
    return pd.crosstab(adata.obs["batch"], adata.obs["cell_type"], normalize="index")


def test_one_batch_is_the_call_without_batches():
    default = simulate_counts(300, 200, 3, seed=5)
    one = simulate_counts(300, 200, 3, seed=5, batches=1, batch_effect=2.0, batch_library_shift=1)
    assert digest(one) == digest(default)
    assert "batch" not in one.obs
    assert one.uns["simulation"].keys() == default.uns["simulation"].keys()
    assert "batches" not in one.uns["simulation"]


def test_batches_are_balanced_and_labelled():
    a = simulate_counts(301, 100, 4, seed=0, batches=3)
    assert list(a.obs["batch"].cat.categories) == ["batch1", "batch2", "batch3"]
    assert sorted(a.obs["batch"].value_counts().tolist()) == [100, 100, 101]
    # Split at random regardless of type: every batch holds about the overall composition.
    overall = a.obs["cell_type"].value_counts(normalize=True).sort_index()
    assert (composition(a) - overall).abs().max().max() < 0.12
    sim = a.uns["simulation"]
    assert sim["batches"] == 3 and sim["batch_composition"] == "equal"
    assert sim["batch_effect"] == 0.25 and sim["batch_library_shift"] == 0.25


def test_batches_keep_the_type_sizes_of_the_same_seed():
    plain = simulate_counts(400, 100, 4, seed=2)
    batched = simulate_counts(400, 100, 4, seed=2, batches=2)
    sizes = plain.obs["cell_type"].value_counts().sort_index()
    assert (batched.obs["cell_type"].value_counts().sort_index() == sizes).all()
    assert (batched.X != plain.X).nnz > 0


def test_same_seed_same_batches_other_seed_other_batches():
    a = simulate_counts(300, 100, 3, seed=4, batches=2, batch_composition="different")
    b = simulate_counts(300, 100, 3, seed=4, batches=2, batch_composition="different")
    c = simulate_counts(300, 100, 3, seed=5, batches=2, batch_composition="different")
    assert digest(a) == digest(b) and list(a.obs["batch"]) == list(b.obs["batch"])
    assert list(a.obs["batch"]) != list(c.obs["batch"])


def test_library_sizes_shift_by_the_documented_factor():
    # Without the gene-wise effect, batch2's median total is exp(2 × 0.3) times batch1's.
    a = simulate_counts(4000, 300, 3, seed=0, batches=2, batch_effect=0.0, batch_library_shift=0.3)
    totals = pd.Series(np.asarray(a.X.sum(axis=1)).ravel(), index=a.obs_names)
    medians = totals.groupby(a.obs["batch"], observed=True).median()
    assert medians["batch2"] / medians["batch1"] == pytest.approx(np.exp(0.6), rel=0.1)
    flat = simulate_counts(4000, 300, 3, seed=0, batches=2, batch_effect=0.0, batch_library_shift=0)
    totals = pd.Series(np.asarray(flat.X.sum(axis=1)).ravel(), index=flat.obs_names)
    medians = totals.groupby(flat.obs["batch"], observed=True).median()
    assert medians["batch2"] / medians["batch1"] == pytest.approx(1.0, abs=0.06)


def gene_log_ratios(adata) -> np.ndarray:
    """log(mean of batch2 / mean of batch1) of the 300 most expressed genes, per cell of
    depth-normalised counts, centred."""
    x = adata.X.toarray()
    x = x / x.sum(axis=1, keepdims=True)
    batch = adata.obs["batch"].to_numpy()
    top = np.argsort(-x.mean(axis=0))[:300]
    ratio = np.log(x[batch == "batch2"][:, top].mean(0) / x[batch == "batch1"][:, top].mean(0))
    return ratio - ratio.mean()


def test_gene_wise_effect_has_the_documented_spread():
    # Each gene's log factor is N(0, sd²) per batch, so its log ratio between two batches
    # has sd √2 · sd; with sd 0 only sampling noise is left. Deep libraries, so that the
    # extra dropout (which falls with expression and so adds to the effect) hardly acts.
    kwargs = dict(
        n_cells=3000, n_genes=1000, n_types=1, seed=0, batches=2, batch_library_shift=0,
        library_size=20000.0,
    )  # fmt: skip
    strong = gene_log_ratios(simulate_counts(**kwargs, batch_effect=0.4))
    none = gene_log_ratios(simulate_counts(**kwargs, batch_effect=0.0))
    assert strong.std() == pytest.approx(0.4 * np.sqrt(2), rel=0.2)
    assert none.std() < 0.1


def test_different_composition_gives_batches_of_different_types():
    equal = simulate_counts(2000, 100, 6, seed=0, batches=2)
    different = simulate_counts(2000, 100, 6, seed=0, batches=2, batch_composition="different")
    # Total variation distance between the two batches' type compositions.
    tv_equal = composition(equal).diff().abs().sum(axis=1).iloc[-1] / 2
    tv_different = composition(different).diff().abs().sum(axis=1).iloc[-1] / 2
    assert tv_equal < 0.1 < 0.3 < tv_different
    # The overall type sizes are those of the equal split.
    assert (
        different.obs["cell_type"].value_counts().sort_index()
        == equal.obs["cell_type"].value_counts().sort_index()
    ).all()
    # Many batches, few cells: every batch still has a cell.
    small = simulate_counts(12, 50, 2, seed=0, batches=10, batch_composition="different")
    assert small.obs["batch"].value_counts().min() >= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batches": 0}, "batches must lie in"),
        ({"batches": 500}, "batches must lie in"),
        ({"batches": 2.5}, "batches must be a whole number"),
        ({"batches": 2, "batch_effect": -0.1}, "batch_effect must be"),
        ({"batches": 2, "batch_library_shift": float("nan")}, "batch_library_shift must be"),
        ({"batches": 2, "batch_composition": "skewed"}, "batch_composition must be"),
    ],
)
def test_bad_batch_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate_counts(100, 50, 3, **kwargs)


def test_cli_simulate_batches(tmp_path, capsys):
    out = tmp_path / "batches.h5ad"
    cmd = ["simulate", "--cells", "200", "--genes", "50", "--types", "3", "--out", str(out)]
    assert main([*cmd, "--batches", "2", "--batch-effect", "0.4", "--batch-composition",
                 "different"]) == 0  # fmt: skip
    assert "2 batches in obs['batch']" in capsys.readouterr().out
    adata = ad.read_h5ad(out)
    assert list(adata.obs["batch"].cat.categories) == ["batch1", "batch2"]
    assert adata.uns["simulation"]["batch_effect"] == 0.4
    assert adata.uns["simulation"]["batch_composition"] == "different"
    expected = simulate_counts(200, 50, 3, batches=2, batch_effect=0.4,
                               batch_composition="different")  # fmt: skip
    assert (adata.X != expected.X).nnz == 0
    assert main([*cmd]) == 0
    assert "batch" not in ad.read_h5ad(out).obs
    assert main([*cmd, "--batches", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batches must lie in" in err[0]
    assert main([*cmd, "--batches", "2", "--batch-effect", "-1"]) == 2
    assert "--batch-effect must be a finite number >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_default_batch_effect_splits_plain_leiden_and_harmony_recovers_the_types():
    """The default's documented behaviour: plain PCA + Leiden separates the batches,
    Harmony on the same PCs mixes them and recovers the types."""
    harmonypy = pytest.importorskip("harmonypy")
    import scanpy as sc
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from scdsec.metrics import batch_entropy

    a = simulate_counts(3000, 2000, 6, seed=0, batches=2)
    sc.pp.filter_genes(a, min_cells=30)
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=1000)
    a = a[:, a.var["highly_variable"]].copy()
    sc.pp.scale(a, max_value=10)
    sc.pp.pca(a, n_comps=50, random_state=0)

    def leiden(rep: str) -> np.ndarray:
        sc.pp.neighbors(a, use_rep=rep, random_state=0)
        sc.tl.leiden(a, resolution=1.0, flavor="igraph", n_iterations=2, random_state=0)
        return a.obs["leiden"].to_numpy()

    plain = leiden("X_pca")
    corrected = harmonypy.run_harmony(
        a.obsm["X_pca"], a.obs, "batch", random_state=0, verbose=False
    )
    z = np.asarray(corrected.Z_corr)
    a.obsm["X_pca_harmony"] = z if z.shape[0] == a.n_obs else z.T
    harmony = leiden("X_pca_harmony")
    types, batches = a.obs["cell_type"], a.obs["batch"]
    assert nmi(batches, plain) > 0.1 and batch_entropy(plain, batches) < 0.8
    assert nmi(batches, harmony) < 0.05 and batch_entropy(harmony, batches) > 0.9
    assert nmi(types, harmony) > nmi(types, plain)
