"""Shared fixtures: small synthetic data, the repository root and the shared real data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SHARED_CASES = ROOT.parent / "shared" / "cases"


@pytest.fixture(autouse=True)
def _restore_package_logger():
    """``configure_logging`` (CLI, workflow steps) detaches the package logger from the root
    logger; put it back after each test so that ``caplog`` sees later tests' log lines."""
    logger = logging.getLogger("scdsec")
    state = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = state[0], state[1], state[2]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_cases() -> Path:
    """``../shared/cases`` (inputs shaped like users' problem files); skip when absent."""
    if not SHARED_CASES.is_dir():
        pytest.skip(f"cases folder {SHARED_CASES} is absent")
    return SHARED_CASES


@pytest.fixture
def small_counts():
    """400 cells × 300 genes of simulated counts with 4 types (labels in
    obs['scdsec_true_label'])."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(400, 300, 4, seed=1, separation=0.8)
    adata.obs["scdsec_true_label"] = adata.obs["cell_type"]
    return adata


@pytest.fixture
def mostly_zero_genes():
    """Shaped like case 06: 300 cells × 800 genes, 400 genes without counts and 100 seen once
    (all in one cell, so they share one mean), in shuffled order (labels in
    obs['scdsec_true_label'])."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from scdsec.simulate import simulate_counts

    sim = simulate_counts(300, 300, 3, seed=2, separation=1.0)
    x = np.zeros((300, 800), dtype=np.float32)
    x[:, :300] = sim.X.toarray()
    x[0, 300:400] = 1
    order = np.random.default_rng(0).permutation(800)
    names = [f"g{j}" for j in range(800)]
    adata = ad.AnnData(
        sp.csr_matrix(x[:, order]),
        obs=sim.obs.copy(),
        var=pd.DataFrame(index=np.asarray(names)[order]),
    )
    adata.obs["scdsec_true_label"] = adata.obs["cell_type"]
    return adata
