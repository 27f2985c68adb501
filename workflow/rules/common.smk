# Config validation and the helpers every rule file uses.

from pathlib import Path
from urllib.parse import urlparse

from snakemake.utils import min_version, validate

min_version("9.0")


# The model's values come from `preset`, overridden by what the config sets under `model`
# and `train`; read those before validation fills every key with its documented default.
MODEL_PARAMS = {
    "preset": config.get("preset", "default"),
    "model": dict(config.get("model") or {}),
    "train": dict(config.get("train") or {}),
}

validate(config, schema="../schemas/config.schema.yaml", set_default=True)


def _config_error(key, problem):
    raise ValueError(f"config.yaml: {key}: {problem}")


for _name in config["run"]:
    if _name not in config["datasets"]:
        _config_error(
            "run", f"dataset {_name!r} is not a key of `datasets` (known: {sorted(config['datasets'])})"
        )
for _name, _entry in config["datasets"].items():
    if (_entry.get("source") is None) == (_entry.get("simulate") is None):
        _config_error(f"datasets.{_name}", "give exactly one of `source` or `simulate`")


wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    seed=r"\d+",
    t=r"\d+",
    k=r"\d+",


T = config["normalize"]["n_top_genes"]
K = config["graph"]["n_neighbors"]


def dataset_entry(wildcards):
    return config["datasets"][wildcards.dataset]


def local_source(wildcards):
    """The dataset's file as an input when it is local, so that a changed file reruns its steps."""
    source = dataset_entry(wildcards).get("source")
    if source is None:
        return []
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        return []
    return parsed.path if parsed.scheme == "file" else source


def graph_file(t, k):
    return f"results/{{dataset}}/preprocess/graph_t{t}_k{k}.h5ad"


def final_outputs():
    return expand(
        "results/{dataset}/scdsec/seed{seed}/clusters.tsv", dataset=config["run"], seed=config["seeds"]
    )
