"""plots/batches.png: the maps by cluster and batch and the stacked composition bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from scdsec import plotting
from scdsec._errors import InputError


def _texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text)]


@pytest.fixture
def cells():
    """240 cells in 3 clusters: cluster 0 mixes two donors, clusters 1 and 2 hold one each."""
    rng = np.random.default_rng(0)
    clusters = np.repeat(["0", "1", "2"], 80)
    batches = np.array(["donor1", "donor2"] * 40 + ["donor1"] * 80 + ["donor2"] * 80)
    centres = {"0": 0.0, "1": 8.0, "2": -8.0}
    embedding = rng.normal(size=(240, 6)) + np.array([centres[c] for c in clusters])[:, None]
    return embedding, clusters, batches


def test_plot_batches_writes_a_png(tmp_path, cells):
    path = tmp_path / "plots" / "batches.png"
    path.parent.mkdir()
    plotting.plot_batches(*cells, path, context="toy · scdsec · seed 0")
    assert path.is_file() and path.stat().st_size > 1000
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # something is drawn, not a blank page
    assert not list(path.parent.glob(".*.tmp*"))


def test_batches_figure_shows_clusters_batches_and_compositions(cells):
    fig = plotting.batches_figure(*cells, context="toy")
    texts = _texts(fig)
    joined = "\n".join(texts)
    assert "coloured by cluster" in joined and "coloured by batch; iLISI" in joined
    assert {"donor1", "donor2", "all cells", "0", "1", "2"} <= set(texts)
    # Cluster 0 is an even mix (entropy 1.00), clusters 1 and 2 hold one donor (0.00).
    assert "80 · 1.00" in texts and texts.count("80 · 0.00") == 2
    assert "240" in texts
    ax_bars = fig.axes[2]
    widths = sorted(round(p.get_width(), 6) for p in ax_bars.patches)
    assert widths.count(0.5) == 4  # all cells and cluster 0: half of each donor
    assert widths.count(1.0) == 2  # clusters 1 and 2: one donor each


def test_plot_batches_samples_the_maps_but_counts_every_cell(cells):
    fig = plotting.batches_figure(*cells, max_cells=100)
    joined = "\n".join(_texts(fig))
    assert "100 of 240 cells on the maps (random sample), all in the bars" in joined
    assert "240" in _texts(fig)


def test_plot_batches_refuses_one_batch_and_mismatched_lengths(tmp_path, cells):
    embedding, clusters, batches = cells
    path = tmp_path / "batches.png"
    with pytest.raises(InputError, match="at least 2 batches"):
        plotting.plot_batches(embedding, clusters, ["donor1"] * 240, path)
    with pytest.raises(InputError, match="239 clusters for 240 cells"):
        plotting.plot_batches(embedding, clusters[:-1], batches, path)
    with pytest.raises(InputError, match="batches: 200 values for 240 cells"):
        plotting.plot_batches(embedding, clusters, batches[:200], path)
    with pytest.raises(InputError, match="no batch"):
        plotting.plot_batches(embedding, clusters, np.where(clusters == "1", None, batches), path)
    assert not path.exists()


def test_batches_plot_step_reads_the_run(tmp_path, cells):
    embedding, clusters, batches = cells
    adata = ad.AnnData(
        X=np.zeros((240, 3), dtype=np.float32),
        obs=pd.DataFrame(
            {"scdsec": pd.Categorical(clusters), "donor": pd.Categorical(batches)},
            index=[f"c{i}" for i in range(240)],
        ),
    )
    adata.obsm["X_scdsec"] = embedding.astype(np.float32)
    h5ad = tmp_path / "scdsec.h5ad"
    adata.write_h5ad(h5ad)
    out = tmp_path / "batches.png"
    plotting.batches_plot_step(h5ad, out, batch_key="donor")
    assert out.stat().st_size > 1000
    with pytest.raises(InputError, match=r"no batch column obs\['plate'\]"):
        plotting.batches_plot_step(h5ad, tmp_path / "other.png", batch_key="plate")
