"""The config schema documents every key, and its model/train part matches the package."""

from __future__ import annotations

import dataclasses

import yaml

from conftest import ROOT
from scdsec.model import PRESETS, ModelParams, TrainParams

SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _walk(node: dict, path: str = ""):
    for key, sub in (node.get("properties") or {}).items():
        yield f"{path}{key}", sub
        yield from _walk(sub, f"{path}{key}.")
    for name, sub in (node.get("$defs") or {}).items():
        yield from _walk(sub, f"$defs.{name}.")


def test_every_key_has_a_description_and_a_default():
    keys = list(_walk(SCHEMA))
    assert len(keys) > 30
    for key, sub in keys:
        assert sub.get("description"), f"{key} has no description"
        # `simulate` is the one exception: a default would put it into every dataset.
        if not key.endswith("simulate"):
            assert "default" in sub, f"{key} has no default"


def test_model_and_train_keys_are_the_default_preset():
    preset = PRESETS["default"]
    for section, cls, values in (
        ("model", ModelParams, preset.model),
        ("train", TrainParams, preset.train),
    ):
        props = SCHEMA["properties"][section]["properties"]
        fields = [f.name for f in dataclasses.fields(cls)]
        assert sorted(props) == sorted(fields), section
        for name in fields:
            value = getattr(values, name)
            value = list(value) if isinstance(value, tuple) else value
            assert props[name]["default"] == value, f"{section}.{name}"


def test_the_shipped_config_validates():
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    assert config["run"] == ["demo"]


def test_strings_from_the_command_line_become_what_the_schema_asks_for():
    """`snakemake --config seeds=[0]` passes ["0"]; numbers, booleans and nulls given as strings
    are read as the schema asks, while strings the schema accepts (names, `auto`) stay."""
    from scdsec.workflow_config import coerce_to_schema

    config = {
        "seeds": ["0", "1"],
        "run": ["7"],  # dataset names are strings
        "deterministic": "true",
        "datasets": {
            "7": {"n_clusters": "5", "labels": "1", "simulate": {"proportions": ["0.5", "1"]}},
            "b": {"n_clusters": "auto", "checksum": "null"},  # a string is a string there
        },
        "qc": {"max_mito_fraction": "null"},
        "train": {"batch_size": "512", "lr": "1e-3"},
        "graph": {"n_neighbors": "many"},  # left for validation to refuse, naming the key
    }
    assert coerce_to_schema(config, SCHEMA) == {
        "seeds": [0, 1],
        "run": ["7"],
        "deterministic": True,
        "datasets": {
            "7": {"n_clusters": 5, "labels": "1", "simulate": {"proportions": [0.5, 1.0]}},
            "b": {"n_clusters": "auto", "checksum": "null"},
        },
        "qc": {"max_mito_fraction": None},
        "train": {"batch_size": 512, "lr": 0.001},
        "graph": {"n_neighbors": "many"},
    }


def test_schema_problem_names_the_key_in_one_sentence():
    from scdsec.workflow_config import schema_problem

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert schema_problem(config, SCHEMA) is None
    config["graph"]["n_neighbors"] = "ten"
    key, problem = schema_problem(config, SCHEMA)
    assert key == "graph.n_neighbors" and "'ten' is not of type 'integer'" in problem
    config["graph"] = {"n_neighbours": 30}
    key, problem = schema_problem(config, SCHEMA)
    assert key == "graph" and problem.startswith("unknown key 'n_neighbours'; known keys: ")
    assert "n_neighbors" in problem


def test_whole_numbers_written_as_floats_are_integers_where_the_schema_asks_for_one():
    """`n_clusters: 8.0` is 8 (the same run folder); 8.5 is left for validation to refuse;
    a float stays a float where the schema takes any number."""
    from scdsec.workflow_config import coerce_to_schema, schema_problem

    config = {
        "seeds": [0.0, "1.0"],
        "datasets": {
            "a": {"n_clusters": 8.0},
            "b": {"n_clusters": "8.0"},
            "c": {"n_clusters": 8.5},
        },
        "graph": {"n_neighbors": 10.0},
        "train": {"lr": 1.0, "batch_size": 512.0},
    }
    coerced = coerce_to_schema(config, SCHEMA)
    assert coerced["seeds"] == [0, 1] and all(type(s) is int for s in coerced["seeds"])
    assert coerced["datasets"]["a"]["n_clusters"] == 8
    assert type(coerced["datasets"]["a"]["n_clusters"]) is int
    assert type(coerced["datasets"]["b"]["n_clusters"]) is int
    assert coerced["datasets"]["c"]["n_clusters"] == 8.5
    assert type(coerced["graph"]["n_neighbors"]) is int
    assert type(coerced["train"]["lr"]) is float  # a number: left as it is
    assert coerced["train"]["batch_size"] == 512 and type(coerced["train"]["batch_size"]) is int
    key, problem = schema_problem({"datasets": {"c": {"n_clusters": 8.5}}}, SCHEMA)
    assert key == "datasets.c.n_clusters"
    assert problem == "must be an integer of at least 2 or 'auto', got 8.5"


def test_config_origin_names_where_a_value_came_from():
    from scdsec.workflow_config import config_origin

    overrides = {"datasets": {"a": {"n_clusters": 1}}}
    given = {"datasets": {"a": {"n_clusters": 1}, "b": {"n_clusters": 3}}, "graph": {}}
    files = ["config.yaml", "mine.yaml"]
    assert config_origin("datasets.a.n_clusters", overrides, files, given) == (
        "--config: datasets.a.n_clusters"
    )
    assert config_origin("datasets.b.n_clusters", overrides, files, given) == (
        "config.yaml, mine.yaml: datasets.b.n_clusters"
    )
    assert config_origin("graph.n_neighbors", overrides, files, given) == (
        "graph.n_neighbors (default, not set in config.yaml, mine.yaml)"
    )
    assert config_origin("graph.n_neighbors", {}, [], None) == "config.yaml: graph.n_neighbors"
