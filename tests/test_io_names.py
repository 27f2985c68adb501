"""Cells whose names repeat keep the names as given in a column of their own."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scdsec.io import read_counts


def _merged(path, extra: dict | None = None) -> list[str]:
    """Two samples concatenated without unique names, as merged exports often are."""
    names = [f"ACGTACGTAC{i % 20:04d}-1" for i in range(40)]
    counts = np.random.default_rng(0).poisson(2.0, size=(40, 15)).astype(np.float32)
    obs = pd.DataFrame({"batch": [0] * 20 + [1] * 20, **(extra or {})}, index=names)
    with pytest.warns(UserWarning):  # anndata's own, on writing repeated names
        ad.AnnData(sp.csr_matrix(counts), obs=obs).write_h5ad(path)
    return names


def test_repeated_cell_names_are_kept_as_given(tmp_path) -> None:
    names = _merged(tmp_path / "merged.h5ad")
    with pytest.warns(UserWarning, match=r"kept in obs\['original_obs_name'\]"):
        adata = read_counts(tmp_path / "merged.h5ad")
    assert adata.obs_names.is_unique and adata.obs_names[20] == "ACGTACGTAC0000-1-1"
    assert list(adata.obs["original_obs_name"]) == names


def test_a_users_column_of_that_name_is_not_overwritten(tmp_path) -> None:
    mine = [f"row{i}" for i in range(40)]
    names = _merged(tmp_path / "merged.h5ad", {"original_obs_name": mine})
    with pytest.warns(UserWarning, match=r"obs\['original_obs_name_1'\]"):
        adata = read_counts(tmp_path / "merged.h5ad")
    assert list(adata.obs["original_obs_name"]) == mine
    assert list(adata.obs["original_obs_name_1"]) == names


def test_unique_names_add_no_column(tmp_path) -> None:
    path = tmp_path / "plain.h5ad"
    ad.AnnData(sp.csr_matrix(np.eye(5, dtype=np.float32))).write_h5ad(path)
    assert "original_obs_name" not in read_counts(path).obs


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_case_13_merged_samples(shared_cases) -> None:
    path = shared_cases / "13-merged-samples" / "merged.h5ad"
    given = ad.read_h5ad(path).obs_names
    adata = read_counts(path)
    assert adata.obs_names.is_unique and list(adata.obs["original_obs_name"]) == list(given)
