"""The demo simulator: seeded, realistic sparsity, not trivially separable."""

from __future__ import annotations

import numpy as np
import pytest

from scdsec.simulate import simulate_counts


def test_same_seed_same_counts_other_seed_other_counts():
    a = simulate_counts(300, 200, 3, seed=5)
    b = simulate_counts(300, 200, 3, seed=5)
    c = simulate_counts(300, 200, 3, seed=6)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0
    assert list(a.obs["cell_type"]) == list(b.obs["cell_type"])


def test_counts_look_like_droplet_data():
    a = simulate_counts(2000, 2000, 5, seed=0)
    x = a.X.toarray()
    assert (x >= 0).all() and np.array_equal(x, np.round(x))
    assert 0.8 < (x == 0).mean() < 0.97
    totals = x.sum(axis=1)
    assert 300 < np.median(totals) < 3000
    assert totals.std() / totals.mean() > 0.3  # library sizes vary
    sizes = a.obs["cell_type"].value_counts()
    assert len(sizes) == 5 and sizes.max() > 1.3 * sizes.min()
    assert a.var_names[0].startswith("MT-")


@pytest.mark.slow
def test_default_is_not_trivially_separable_but_separation_helps():
    """scanpy's standard Leiden lands well below ARI 1 on the default, and near 1 when easy."""
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    def leiden_ari(separation: float) -> float:
        a = simulate_counts(3000, 2000, 6, seed=0, separation=separation)
        sc.pp.filter_genes(a, min_cells=30)
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)
        sc.pp.highly_variable_genes(a, n_top_genes=1000)
        a = a[:, a.var["highly_variable"]].copy()
        sc.pp.scale(a, max_value=10)
        sc.pp.pca(a, n_comps=50)
        sc.pp.neighbors(a)
        sc.tl.leiden(a, resolution=1.0, flavor="igraph", n_iterations=2, random_state=0)
        return adjusted_rand_score(a.obs["cell_type"], a.obs["leiden"])

    default = leiden_ari(0.45)
    assert 0.3 < default < 0.9
    assert leiden_ari(1.0) > 0.95
