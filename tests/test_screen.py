"""benchmarks/screen.py: the leave-one-dataset-out table and ensembles scored from kept labels."""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np
import pandas as pd

from conftest import ROOT

spec = importlib.util.spec_from_file_location("screen", ROOT / "benchmarks" / "screen.py")
screen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(screen)


def _scores(rows):
    """Rows of the first columns (files written before the later columns existed)."""
    return pd.DataFrame(rows, columns=screen.COLUMNS[: len(rows[0])])


def test_table_chooses_per_fold_on_the_other_datasets(tmp_path, capsys):
    # variant a wins on d1 and d2 by a lot and loses on d3; b is steady
    nmi = {("d1", "a"): 0.9, ("d1", "b"): 0.6, ("d2", "a"): 0.9, ("d2", "b"): 0.6}
    nmi |= {("d3", "a"): 0.1, ("d3", "b"): 0.6}
    rows = []
    for seed in (0, 1):
        for dataset in ("d1", "d2", "d3"):
            for method in ("a", "b", *screen.BASELINES):
                value = nmi.get((dataset, method), 0.5)
                rows.append([dataset, method, seed, value, value, 1.0, 1.0, 1, "abc1234"])
    path = tmp_path / "scores.tsv"
    _scores(rows).to_csv(path, sep="\t", index=False)
    screen.table(argparse.Namespace(scores=[str(path)], variants=["a", "b"], methods=None))
    out = capsys.readouterr().out
    folds = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[2]
        for line in out.splitlines()
        if line.startswith("| d") and line.count("|") == 8
    }
    assert folds == {"d1": "b", "d2": "b", "d3": "a"}  # d1 out: d2 + d3 favour b (0.6 vs 0.5)
    assert "| d3 | 2 | a | 0.100 / 0.100 | leiden | 0.500 / 0.500 | -0.400 |" in out


def test_consensus_rows_use_the_ensemble_seeds_and_sum_their_cost(tmp_path):
    rng = np.random.default_rng(0)
    truth = np.repeat(["x", "y", "z"], [60, 30, 10])
    folder = tmp_path / "labels" / "d1"
    folder.mkdir(parents=True)
    np.savez(folder / "truth.npz", truth=truth, n_clusters=3)
    rows = []
    codes = np.unique(truth, return_inverse=True)[1]
    for seed in range(5):  # seeds 0–2 make ensemble 0; 3–5 would make ensemble 1 (5 is absent)
        noisy = codes.copy()
        moved = rng.random(len(codes)) < 0.2
        noisy[moved] = rng.integers(0, 3, moved.sum())
        np.save(folder / f"v.seed{seed}.npy", noisy)
        rows.append(["d1", "v", seed, 0.0, 0.0, 0.0, 10.0 + seed, 2, "abc1234"])
    path = tmp_path / "scores.tsv"
    _scores(rows).to_csv(path, sep="\t", index=False)
    args = argparse.Namespace(
        scores=str(path), labels=str(tmp_path / "labels"), runs=3, groups=2, variants=["v"]
    )
    screen.consensus(args)
    screen.consensus(args)  # a second call adds nothing
    scores = pd.read_csv(path, sep="\t")
    ensembles = scores[scores["method"] == "v+consensus3"]
    assert list(ensembles["seed"]) == [0]
    assert ensembles["seconds"].iloc[0] >= 10 + 11 + 12
    assert ensembles["nmi"].iloc[0] > 0.8
    assert ensembles["threads"].iloc[0] == 2  # the runs'
    assert ensembles["commit"].iloc[0] == screen._commit()


def test_rows_follow_the_header_of_the_file_they_are_appended_to(tmp_path):
    values = ["d1", "v", 0, 0.5, 0.4, 0.9, 3.0, 1, "abc1234", 4]
    row = dict(zip(screen.COLUMNS, values, strict=True))
    old = tmp_path / "old.tsv"  # written before the threads and commit columns
    old.write_text("\t".join(screen.COLUMNS[:7]) + "\n")
    screen._append(old, row)
    written = old.read_text().splitlines()[1].split("\t")
    assert written == ["d1", "v", "0", "0.5", "0.4", "0.9", "3.0"]
    new = tmp_path / "new.tsv"
    new.write_text("\t".join(screen.COLUMNS) + "\n")
    screen._append(new, row)
    assert pd.read_csv(new, sep="\t").iloc[0].to_dict() == row


def test_table_reads_the_workflows_scores_leaving_out_runs_without_scores(tmp_path, capsys):
    workflow = pd.DataFrame(
        {
            "dataset": ["d1", "d1", "d1", "d1"],
            "method": ["scdsec", "scdsec", "leiden", "scvi_kmeans"],
            "seed": [0, 1, 0, 0],
            "status": ["ok", "ok", "ok", "missing"],
            "nmi": [0.7, 0.8, 0.6, np.nan],
            "ari": [0.5, 0.6, 0.4, np.nan],
        }
    )
    path = tmp_path / "scores.tsv"
    workflow.to_csv(path, sep="\t", index=False)
    screen.table(argparse.Namespace(scores=[str(path)], variants=None, methods=None))
    out = capsys.readouterr().out
    assert "| dataset | scdsec | leiden |" in out  # the missing method has no column
    assert "| d1 | 0.750±0.071 / 0.550 [2] | 0.600 / 0.400 [1] |" in out
    assert "| mean over the 1 real datasets | 0.750 / 0.550 | 0.600 / 0.400 |" in out


def test_a_row_in_two_files_counts_once(tmp_path, capsys):
    row = ["d1", "leiden", 0, 0.6, 0.5, 1.0, 1.0, 1, "abc1234"]
    for name, rows in (
        ("a.tsv", [row]),
        ("b.tsv", [row, ["d1", "leiden", 1, 0.8, 0.7, 1.0, 1.0, 1, "x"]]),
    ):
        _scores(rows).to_csv(tmp_path / name, sep="\t", index=False)
    files = [str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv")]
    screen.table(argparse.Namespace(scores=files, variants=None, methods=None))
    out = capsys.readouterr().out
    assert "2 rows in more than one file, counted once (0 keys differ)" in out
    assert "| d1 | 0.700±0.141 / 0.600 (1.00) [2] |" in out  # seeds 0 and 1, each once


def test_table_of_variants_without_baselines_has_no_leave_one_out(tmp_path, capsys):
    rows = [
        [d, m, s, 0.5 + 0.1 * (m == "a"), 0.4, np.nan, 1.0, 1, "abc1234"]
        for d in ("d1", "d2")
        for m in ("a", "b")
        for s in (0, 1)
    ]
    path = tmp_path / "scores.tsv"
    _scores(rows).to_csv(path, sep="\t", index=False)
    screen.table(argparse.Namespace(scores=[str(path)], variants=None, methods=None))
    out = capsys.readouterr().out
    assert "| mean over the 2 real datasets | 0.600 / 0.400 | 0.500 / 0.400 |" in out
    assert "Leave one dataset out" not in out


def test_variants_that_change_pretraining_get_a_pretraining_of_their_own():
    variants = screen._variants(
        [
            "base:",
            "merge:overcluster=3,merge_criterion=modularity",
            "auto:n_clusters=auto,overcluster=3",
            "mask:mask_fraction=0.2",
            "mask_merge:mask_fraction=0.2,overcluster=3",
            "contrast:contrastive_weight=0.1",
        ]
    )
    groups = screen._by_pretraining(list(variants), variants)
    assert groups == {
        (): ["base", "merge", "auto"],
        (("mask_fraction", 0.2),): ["mask", "mask_merge"],
        (("contrastive_weight", 0.1),): ["contrast"],
    }


def test_imbalanced_config_names_subsets_of_the_shared_datasets():
    chosen = screen._datasets([str(ROOT / "benchmarks" / "imbalanced.yaml")])
    assert len(chosen) == 12
    for name, entry in chosen.items():
        assert name.startswith(f"imb_{entry['from']}_d{entry['draw']}")
        assert entry["imbalance"] == {"largest_fraction": 0.5, "n_rare": 3, "rare_fraction": 0.02}
        assert entry["base"]["source"].startswith("../shared/data/")
