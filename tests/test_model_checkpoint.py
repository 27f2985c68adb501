"""Training checkpoints: a training stopped part-way resumes and ends as if never stopped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model_training import TINY, make_prepared_adata

from scdsec.model import SCDSEC, _training

SCHEDULE = {"pretrain_epochs": 8, "epochs": 7, "update_interval": 2}


class Crash(RuntimeError):
    """Stands for the kill of a training job."""


@pytest.fixture(scope="module")
def prepared():
    return make_prepared_adata()


def _train(adata, batch_size, **kwargs):
    model = SCDSEC(adata, 3, seed=5, **TINY)
    model.train(device="cpu", threads=1, batch_size=batch_size, **{**SCHEDULE, **kwargs})
    return model


def _crash_after(monkeypatch, n_epochs: int) -> None:
    """Make the ``n_epochs + 1``-th epoch raise, as a kill between two epochs would."""
    real = _training._epoch
    calls = {"n": 0}

    def epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_epochs:
            raise Crash
        return real(*args, **kwargs)

    monkeypatch.setattr(_training, "_epoch", epoch)


@pytest.mark.parametrize("batch_size", ["full", 50], ids=["full-batch", "mini-batch"])
@pytest.mark.parametrize("stop_after", [5, 12], ids=["in-pretraining", "in-joint-training"])
def test_resumed_training_ends_as_an_uninterrupted_one(
    prepared, tmp_path, monkeypatch, batch_size, stop_after
):
    reference = _train(prepared, batch_size)
    path = tmp_path / "ckpt" / "seed5.pt"
    with monkeypatch.context() as patch:
        _crash_after(patch, stop_after)
        with pytest.raises(Crash):
            _train(prepared, batch_size, checkpoint=path, checkpoint_every=3)
    saved = torch.load(path, weights_only=True)
    expected_stage = "pretrain" if stop_after < SCHEDULE["pretrain_epochs"] else "cluster"
    assert saved["stage"] == expected_stage and saved["epoch"] % 3 == 0
    resumed = _train(prepared, batch_size, checkpoint=path, checkpoint_every=3)
    assert np.array_equal(resumed.predict(), reference.predict())
    assert np.array_equal(
        resumed.get_latent_representation(), reference.get_latent_representation()
    )
    columns = ["stage", "epoch", "zinb", "rec", "graph", "kl", "total", "labels_changed"]
    assert resumed.history[columns].equals(reference.history[columns])
    assert resumed.history["seconds"].is_monotonic_increasing
    assert resumed._run["resumed_from"] == {"stage": expected_stage, "epoch": saved["epoch"]}
    assert not path.exists() and not path.parent.exists()  # removed once training ended


def test_checkpoint_of_other_settings_is_not_resumed(prepared, tmp_path, monkeypatch, caplog):
    path = tmp_path / "seed5.pt"
    with monkeypatch.context() as patch:
        _crash_after(patch, 4)
        with pytest.raises(Crash):
            _train(prepared, "full", checkpoint=path, checkpoint_every=2)
    assert path.exists()
    changed = _train(prepared, "full", checkpoint=path, checkpoint_every=2, lr=2e-3)
    assert "resumed_from" not in changed._run
    fresh = _train(prepared, "full", lr=2e-3)
    assert np.array_equal(changed.get_latent_representation(), fresh.get_latent_representation())


def test_unreadable_checkpoint_starts_afresh(prepared, tmp_path, caplog):
    path = tmp_path / "seed5.pt"
    path.write_bytes(b"not a checkpoint")
    model = _train(prepared, "full", checkpoint=path)
    assert "unreadable checkpoint" in caplog.text and "resumed_from" not in model._run
    assert np.array_equal(model.predict(), _train(prepared, "full").predict())


@pytest.mark.parametrize("batch_size", ["full", 50], ids=["full-batch", "mini-batch"])
def test_resumed_between_merges_ends_as_an_uninterrupted_one(
    prepared, tmp_path, monkeypatch, batch_size
):
    """Saved after the first of two rounds of merges (9 centres → 6, then 3): the checkpoint
    holds 6 centres, and the resumed run merges on to the same 3 clusters."""
    merging = {"overcluster": 3, "merge_rounds": 2, "merge_interval": 2}
    reference = _train(prepared, batch_size, **merging)
    path = tmp_path / "seed5.pt"
    with monkeypatch.context() as patch:
        _crash_after(patch, SCHEDULE["pretrain_epochs"] + 3)
        with pytest.raises(Crash):
            _train(prepared, batch_size, checkpoint=path, checkpoint_every=3, **merging)
    saved = torch.load(path, weights_only=True)
    assert saved["stage"] == "cluster" and saved["module"]["assignment.centers"].shape[0] == 6
    resumed = _train(prepared, batch_size, checkpoint=path, checkpoint_every=3, **merging)
    assert resumed.module.assignment.centers.shape[0] == 3
    assert np.array_equal(resumed.predict(), reference.predict())
    assert resumed._run["resumed_from"] == {"stage": "cluster", "epoch": 3}


def test_the_model_does_not_import_the_workflow_layer():
    """No module of scdsec/model imports the workflow layer, at the top or inside a function
    (saving a model once imported the steps' file helper: model → pipeline → tl → model)."""
    import ast
    from pathlib import Path

    import scdsec.model

    layer = {"pipeline", "tl", "cli", "evaluate", "experiments", "workflow_config"}
    found = []
    for path in Path(scdsec.model.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level else []
                names += [node.module or ""] if not node.level else []
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.removeprefix("scdsec.").split(".")[0] in layer:
                    found.append(f"{path.name}: {name}")
    assert found == []
