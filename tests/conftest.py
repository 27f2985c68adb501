"""Shared fixtures: small synthetic data, the repository root and the shared real data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def small_counts():
    """400 cells × 300 genes of simulated counts with 4 types (labels in obs['label'])."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(400, 300, 4, seed=1, separation=0.8)
    adata.obs["label"] = adata.obs["cell_type"]
    return adata
