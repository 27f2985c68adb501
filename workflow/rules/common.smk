# Config validation and the helpers every rule file uses.

import hashlib
import json
import re
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

# Method names and their parameters come from the package beside this workflow (no heavy imports).
sys.path.insert(0, str(Path(workflow.basedir)))
from scdsec import experiments as xp
from scdsec.io import download
from scdsec import InputError
from scdsec._checks import check_cell_count, h5ad_n_obs
from scdsec.workflow_config import coerce_to_schema, config_origin, schema_problem

min_version("9.0")

# `--config seeds=[0]` arrives as ["0"]: numbers, booleans and nulls given as strings become
# what the schema asks for before anything reads the config (and `8.0` an integer where the
# schema asks for one, so that it names the same run folders as `8`).
SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
_schema = yaml.safe_load(SCHEMA.read_text())
coerce_to_schema(config, _schema)
_GIVEN = None  # the config as read, once validation has passed (before defaults fill it)


def _config_error(key, problem):
    # where the value came from: `--config` on the command line, else every config file read
    # (config.yaml, then each --configfile over it), not only the first
    files = [str(f) for f in workflow.configfiles]
    overrides = getattr(getattr(workflow, "config_settings", None), "config", None) or {}
    where = config_origin(key, overrides, files, _GIVEN)
    raise ValueError(f"{where}: {problem}")


# A wrong config stops here in one line naming the key (Snakemake's validate below would print
# the whole schema after it).
if (_problem := schema_problem(config, _schema)) is not None:
    _config_error(*_problem)


# The model's values come from `preset`, overridden by what the config sets under `model`
# and `train`; read those before validation fills every key with its documented default.
_GIVEN = json.loads(json.dumps(config))
MODEL_PARAMS = {
    "preset": config.get("preset", "default"),
    "model": dict(config.get("model") or {}),
    "train": dict(config.get("train") or {}),
}

validate(config, schema=str(SCHEMA), set_default=True)


for _name in config["run"]:
    if _name not in config["datasets"]:
        _config_error(
            "run", f"dataset {_name!r} is not a key of `datasets` (known: {sorted(config['datasets'])})"
        )
for _name, _entry in config["datasets"].items():
    if (_entry.get("source") is None) == (_entry.get("simulate") is None):
        _config_error(f"datasets.{_name}", "give exactly one of `source` or `simulate`")
    if _name in ("benchmark", "ablation", "sensitivity", "scalability"):
        _config_error(f"datasets.{_name}", "this name is taken by an experiment's results folder")
    _simulate = _entry.get("simulate") or {}
    _proportions = _simulate.get("proportions")
    if isinstance(_proportions, list) and len(_proportions) != _simulate["types"]:
        _config_error(
            f"datasets.{_name}.simulate.proportions",
            f"give one weight per type ({_simulate['types']} types), got {len(_proportions)}",
        )
    if isinstance(_proportions, list) and not any(_proportions):
        _config_error(f"datasets.{_name}.simulate.proportions", "the weights are all zero")
    if _entry.get("batch_pattern") is not None and _entry.get("batch_key") is None:
        _config_error(
            f"datasets.{_name}.batch_pattern",
            "name the column it makes with batch_key (e.g. batch_key: plate)",
        )
    if _entry.get("batch_pattern") is not None:
        try:
            _groups = re.compile(_entry["batch_pattern"]).groups
        except re.error as _err:
            _config_error(f"datasets.{_name}.batch_pattern", f"not a regular expression: {_err}")
        if _groups < 1:
            _config_error(
                f"datasets.{_name}.batch_pattern",
                "has no group: put the batch in parentheses, e.g. '^([^:]+):'",
            )

# What a dataset's cells must hold is checked here, before any job, where the config tells the
# cells (a simulated dataset) or a local .h5ad's index does; other files' cells are checked as
# soon as `download` has read them.
for _name in config["run"]:
    _entry = config["datasets"][_name]
    _simulate = _entry.get("simulate")
    if _simulate is not None and _simulate["types"] > _simulate["cells"]:
        _config_error(
            f"datasets.{_name}.simulate.types",
            f"{_simulate['types']} types need at least as many cells (simulate.cells = {_simulate['cells']})",
        )
    if _simulate is not None:
        _cells, _what = _simulate["cells"], "simulated cells (simulate.cells)"
    else:
        try:
            _path = download.local_source(str(_entry["source"]))
        except ValueError:  # a scheme neither http(s) nor file: named below
            _path = None
        _cells, _what = (h5ad_n_obs(_path) if _path else None), f"cells in {_path}"
    if _cells is None:
        continue
    try:
        check_cell_count(
            _cells,
            n_neighbors=config["graph"]["n_neighbors"],
            n_clusters=_entry["n_clusters"],
            cells=_what,
            neighbors_key="graph.n_neighbors",
            clusters_key=f"datasets.{_name}.n_clusters",
        )
    except InputError as _err:
        _key = "graph.n_neighbors" if "graph.n_neighbors" in str(_err) else f"datasets.{_name}.n_clusters"
        _config_error(_key, f"dataset {_name}: {_err}")

EXPERIMENT_DATASETS = config["experiments"]["datasets"] or config["run"][:1]
EXPERIMENT_SEEDS = config["experiments"]["seeds"]
for _name in EXPERIMENT_DATASETS:
    if _name not in config["datasets"]:
        _config_error(
            "experiments.datasets",
            f"dataset {_name!r} is not a key of `datasets` (known: {sorted(config['datasets'])})",
        )


def local_path(entry, key="source"):
    """The dataset's local file or folder (None for a URL or simulated data); with ``key``
    "metadata", its cell metadata table's."""
    source = entry.get(key)
    return None if source is None else download.local_source(str(source))


# A local dataset (or metadata table) that is not there stops the run at once, naming the
# dataset and the path.
for _name, _key in [(n, k) for n in dict.fromkeys([*config["run"], *EXPERIMENT_DATASETS]) for k in ("source", "metadata")]:
    try:
        _path = local_path(config["datasets"][_name], _key)
    except ValueError as _err:  # InputError: a scheme that is neither http(s) nor file
        _config_error(f"datasets.{_name}.{_key}", str(_err))
    if _path is not None and not Path(_path).exists():
        _folder = Path(_path).parent
        _config_error(
            f"datasets.{_name}.{_key}",
            (
                f"the folder {_folder} is missing (it should hold {Path(_path).name})"
                if not _folder.is_dir()
                else f"{_path} does not exist"
            )
            + f" — relative paths are read from the working directory {Path.cwd()}",
        )


wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    params="[A-Za-z0-9_.]+",
    seed=r"\d+",
    t=r"\d+",
    k=r"\d+",
    hash="[0-9a-f]{8}",
    method=xp.METHOD_REGEX,


T = config["normalize"]["n_top_genes"]
K = config["graph"]["n_neighbors"]


def dataset_entry(wildcards):
    return config["datasets"][wildcards.dataset]


def download_entry(wildcards):
    """The dataset's entry as the download step reads it: without `n_clusters` and
    `batch_key`, which it only checks (from the config), so that changing K or the batch key
    reruns no QC (`batch_pattern`, which makes a column, stays); a simulation of one batch
    without the keys of batches, so that its entry is the one of a config without them."""
    entry = {
        k: v for k, v in dataset_entry(wildcards).items() if k not in ("n_clusters", "batch_key")
    }
    simulate = entry.get("simulate")
    if simulate is not None and simulate["batches"] == 1:  # as written before batches existed
        entry["simulate"] = {k: v for k, v in simulate.items() if k not in SIMULATED_BATCH_KEYS}
    return entry


#: The `simulate:` keys of batches, which act only with `batches` > 1.
SIMULATED_BATCH_KEYS = ("batches", "batch_effect", "batch_library_shift", "batch_composition")


def batch_key(dataset):
    """The dataset's batch column (`batch_key`), None when it has none."""
    return config["datasets"][dataset].get("batch_key")


def local_source(wildcards):
    """The dataset's local files (counts, metadata table) as inputs, their modification times
    ignored (`ancient`): what reruns its steps is a change of content (`source_content`), not
    a copy or a remount."""
    paths = [local_path(dataset_entry(wildcards), key) for key in ("source", "metadata")]
    return [ancient(path) for path in paths if path]


def source_content(wildcards):
    """SHA-256 of a local dataset's content (a param: a change reruns its steps); None else —
    with a local metadata table, a list of both. Cached in resources/source_digests.json by
    size and modification time."""
    digests = [
        download.content_digest(path, cache="resources/source_digests.json")
        for path in (local_path(dataset_entry(wildcards), key) for key in ("source", "metadata"))
        if path
    ]
    return None if not digests else digests[0] if len(digests) == 1 else digests


# ---------------------------------------------------------------- preprocessing files
# Each preprocessing file is named by what it depends on beyond the dataset: t and K in clear,
# and {hash}, a hash of every other setting of its step and of the steps before it (listed in
# the .yaml beside it) — so that changing a setting and changing it back finds the first files
# again, and the runs trained on them stay up to date (as run folders do, below).

def settings_hash(settings):
    """First 8 hex digits of the SHA-1 of ``settings`` as sorted JSON."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


#: Settings that act only on a dataset with a `batch_key`: left out of the other datasets'
#: settings, so that their files keep the names (hashes) of a config without them.
BATCH_SETTINGS = {"normalize": ("hvg_per_batch",), "graph": ("batch_correction",)}


def step_section(step, dataset):
    """The config section of ``step`` (normalize or graph) as the dataset's files depend on
    it: with its `batch_key` added, or without the settings that act only with one."""
    key = batch_key(dataset)
    found = {
        k: v for k, v in config[step].items() if key is not None or k not in BATCH_SETTINGS[step]
    }
    return found if key is None else {**found, "batch_key": key}


def preprocess_settings(step, dataset=None):
    """Every setting the file of ``step`` (qc, normalize or graph) depends on beyond the
    dataset, t and K: its own and those of the steps before it (the dataset's `batch_key`
    among them; ``dataset`` may be None for qc)."""
    settings = {"qc": config["qc"]}
    if step in ("normalize", "graph"):
        found = step_section("normalize", dataset)
        settings["normalize"] = {k: v for k, v in found.items() if k != "n_top_genes"}
    if step == "graph":
        found = step_section("graph", dataset)
        settings["graph"] = {k: v for k, v in found.items() if k != "n_neighbors"}
    return settings


def preprocess_hash(step, dataset=None):
    return settings_hash(preprocess_settings(step, dataset))


#: The preprocessing files as the rules make them ({hash}: :func:`preprocess_hash` of the step).
QC_FILE = "results/{dataset}/preprocess/qc_{hash}.h5ad"
NORMALIZED_FILE = "results/{dataset}/preprocess/normalized_t{t}_{hash}.h5ad"
GRAPH_FILE = "results/{dataset}/preprocess/graph_t{t}_k{k}_{hash}.h5ad"


def qc_file():
    """The config's QC file ({dataset} left as a wildcard: QC does not depend on the batch)."""
    return QC_FILE.replace("{hash}", preprocess_hash("qc"))


def normalized_file(t, dataset):
    return NORMALIZED_FILE.format(dataset=dataset, t=t, hash=preprocess_hash("normalize", dataset))


def graph_file(t, k, dataset):
    return GRAPH_FILE.format(dataset=dataset, t=t, k=k, hash=preprocess_hash("graph", dataset))


def checked_preprocess_settings(step):
    """A params function: every setting of ``step``'s file, t and K included (the steps' keyword
    arguments, and the .yaml beside the file), after checking that the file asked for is named
    by the current config's hash (a file of other settings cannot be made again from it)."""

    def settings(wildcards):
        expected = preprocess_hash(step, wildcards.dataset)
        if wildcards.hash != expected:
            raise ValueError(
                f"results/{wildcards.dataset}/preprocess/ files named {wildcards.hash} were made "
                f"with other {step} settings than the config's ({expected}); ask for those instead"
            )
        found = preprocess_settings(step, wildcards.dataset)
        if "normalize" in found:
            found["normalize"] = {**found["normalize"], "n_top_genes": int(wildcards.t)}
        if "graph" in found:
            found["graph"] = {**found["graph"], "n_neighbors": int(wildcards.k)}
        return found

    return settings


# ---------------------------------------------------------------- methods, evaluation, experiments
# Every method's results: one run folder per dataset × method × parameters × seed (method names:
# scdsec/experiments.py). {params} names what the result depends on beyond the dataset and the
# seed — t{t}_k{K}_<hash> for a deep method, <hash> for a baseline, the hash over every other
# setting (run_config, listed in the run's params.yaml) — so that variants stay side by side:
# changing a setting and changing it back finds the first result again.

RUN_DIR = "results/{dataset}/{method}/{params}/seed{seed}"
RUN_LOG_DIR = "logs/{dataset}/{method}/{params}/seed{seed}"
#: The labels of a run's files in the report.
RUN_LABELS = {"dataset": "{dataset}", "method": "{method}", "params": "{params}", "seed": "{seed}"}


def baseline_settings(method):
    """The `baselines` section as a baseline reads it (the scvi part only for scVI's)."""
    if method in xp.SCVI_BASELINES:
        return config["baselines"]
    return {k: v for k, v in config["baselines"].items() if k != "scvi"}


def run_config(dataset, method):
    """Every setting a method's result on a dataset depends on (beyond the seed)."""
    entry = config["datasets"][dataset]
    if xp.is_deep(method):
        spec = xp.deep_spec(method, t=T, k=K)
        return {
            "qc": config["qc"],
            "normalize": {**step_section("normalize", dataset), "n_top_genes": spec.t},
            "graph": {**step_section("graph", dataset), "n_neighbors": spec.k},
            **xp.merge_params(MODEL_PARAMS, spec.overrides),  # preset, model, train
            "n_clusters": entry["n_clusters"],
            "deterministic": config["deterministic"],
        }
    found = {
        "qc": config["qc"],
        "baselines": baseline_settings(method),
        "n_clusters": entry["n_clusters"],
    }
    if batch_key(dataset) is not None:
        found["batch"] = baseline_batch(dataset)
    if xp.needs_n_clusters(method) and entry["n_clusters"] == "auto":  # K from the graph
        found["graph_file"] = graph_file(T, K, dataset)
    return found


def baseline_batch(dataset):
    """How a baseline treats the dataset's batch: its key and scDSEC's correction (the same
    corrected PCs for every method); empty without a batch key."""
    key = batch_key(dataset)
    if key is None:
        return {}
    return {"batch_key": key, "batch_correction": config["graph"]["batch_correction"]}


def run_params(dataset, method):
    """The {params} part of a run's folder (see RUN_DIR)."""
    digest = settings_hash(run_config(dataset, method))
    if xp.is_deep(method):
        spec = xp.deep_spec(method, t=T, k=K)
        return f"t{spec.t}_k{spec.k}_{digest}"
    return digest


def run_dir(dataset, method, seed):
    return RUN_DIR.format(
        dataset=dataset, method=method, params=run_params(dataset, method), seed=seed
    )


def checked_run_config(wildcards):
    """The run's settings, after checking that its folder names the current config's: a
    folder of other settings cannot be made again from this config (it is kept as it is)."""
    expected = run_params(wildcards.dataset, wildcards.method)
    if wildcards.params != expected:
        raise ValueError(
            f"results/{wildcards.dataset}/{wildcards.method}/{wildcards.params}/ holds a run of "
            f"other settings than the config's ({expected}); ask for that folder instead"
        )
    return run_config(wildcards.dataset, wildcards.method)


def final_outputs():
    return [
        f"{run_dir(dataset, 'scdsec', seed)}/clusters.tsv"
        for dataset in config["run"]
        for seed in config["seeds"]
    ]


def result_file(dataset, method, seed):
    """A method's result h5ad (``scdsec.h5ad`` for every deep method, ``{method}.h5ad`` else)."""
    return f"{run_dir(dataset, method, seed)}/{xp.method_key(method)}.h5ad"


def method_benchmark(dataset, method, seed):
    return f"results/{dataset}/benchmarks/{method}_{run_params(dataset, method)}_seed{seed}.tsv"


def deep_spec(wildcards):
    return xp.deep_spec(wildcards.method, t=T, k=K)


def train_graph(wildcards):
    """The graph a deep method trains on (its own t or K for the sensitivity variants)."""
    checked_run_config(wildcards)
    spec = deep_spec(wildcards)
    return graph_file(spec.t, spec.k, wildcards.dataset)


def train_params(wildcards):
    """The run's model parameters with the method's overrides (sdcn, ablations, α)."""
    return xp.merge_params(MODEL_PARAMS, deep_spec(wildcards).overrides)


def baseline_graph(wildcards):
    """The kNN graph, for the estimate of K when a baseline that needs K has `auto`."""
    checked_run_config(wildcards)
    if xp.needs_n_clusters(wildcards.method) and dataset_entry(wildcards)["n_clusters"] == "auto":
        return graph_file(T, K, wildcards.dataset)
    return []


def preprocess_benchmarks(dataset, method):
    """Benchmark files of the steps that made a deep method's input (normalize, graph)."""
    if not xp.is_deep(method):
        return []
    spec = xp.deep_spec(method, t=T, k=K)
    return [
        f"results/{dataset}/benchmarks/normalize_t{spec.t}_{preprocess_hash('normalize', dataset)}.tsv",
        f"results/{dataset}/benchmarks/graph_t{spec.t}_k{spec.k}_{preprocess_hash('graph', dataset)}.tsv",
    ]


def evaluate_runs(wildcards):
    """One record per method × seed of the run: its result file and benchmark files."""
    return [
        {
            "method": method,
            "seed": seed,
            "key": xp.method_key(method),
            "h5ad": result_file(wildcards.dataset, method, seed),
            "benchmark": method_benchmark(wildcards.dataset, method, seed),
            "preprocess_benchmarks": preprocess_benchmarks(wildcards.dataset, method),
        }
        for method in config["methods"]
        for seed in config["seeds"]
    ]


def evaluate_inputs(wildcards):
    files = []
    for run in evaluate_runs(wildcards):
        files += [run["h5ad"], run["benchmark"], *run["preprocess_benchmarks"]]
    return list(dict.fromkeys(files))


def ablation_entries(wildcards=None):
    variants = [xp.FULL, *config["experiments"]["ablation"]]
    return [
        {
            "dataset": dataset,
            "variant": variant,
            "seed": seed,
            "method": xp.ablation_method(variant),
            "key": "scdsec",
            "h5ad": result_file(dataset, xp.ablation_method(variant), seed),
        }
        for dataset in EXPERIMENT_DATASETS
        for variant in variants
        for seed in EXPERIMENT_SEEDS
    ]


def n_genes_after_qc(dataset):
    """Genes left after QC (from the `count_genes` checkpoint): the cap of the t sweep."""
    job = checkpoints.count_genes.get(dataset=dataset, hash=preprocess_hash("qc"))
    with open(job.output[0]) as fh:
        return int(fh.read().split()[0])


def sensitivity_entries(wildcards=None):
    sweeps = config["experiments"]["sensitivity"]
    entries = []
    for dataset in EXPERIMENT_DATASETS:
        for parameter in ("t", "k", "alpha"):
            n_genes = n_genes_after_qc(dataset) if parameter == "t" else None
            for value, method in xp.sensitivity_points(parameter, sweeps[parameter], n_genes=n_genes):
                entries += [
                    {
                        "dataset": dataset,
                        "parameter": parameter,
                        "value": value,
                        "seed": seed,
                        "method": method,
                        "key": "scdsec",
                        "h5ad": result_file(dataset, method, seed),
                    }
                    for seed in EXPERIMENT_SEEDS
                ]
    return entries


def experiment_graphs(wildcards=None):
    """Each experiment dataset's graph file (for its true labels)."""
    return {d: graph_file(T, K, d) for d in EXPERIMENT_DATASETS}


def entry_files(entries):
    return list(dict.fromkeys(entry["h5ad"] for entry in entries))


def scalability_entries():
    """Per dataset of `run` (first seed): each method's steps with their benchmark files.

    A method's whole run: scdsec — qc, normalize, graph, train; a baseline — qc and its own
    step (scanpy's pipeline, or scVI, from the QC'd counts). The data step (download or
    simulate) is shared and reported apart, under the method `data`."""
    if "scdsec" not in config["methods"]:
        _config_error("methods", "the scalability target measures scdsec: list it")
    seed = config["seeds"][0]
    entries = []
    for dataset in config["run"]:
        bench = f"results/{dataset}/benchmarks"
        steps = [{"method": "data", "step": "download", "benchmark": f"{bench}/download.tsv"}]
        for method in config["methods"]:
            own = [{"step": "qc", "benchmark": f"{bench}/qc_{preprocess_hash('qc')}.tsv"}]
            if method == "scdsec":
                normalize, graph = preprocess_benchmarks(dataset, method)
                own += [
                    {"step": "normalize", "benchmark": normalize},
                    {"step": "graph", "benchmark": graph},
                ]
            own.append(
                {"step": "train", "benchmark": method_benchmark(dataset, method, seed)}
                if method == "scdsec"
                else {
                    "step": "cluster",
                    "benchmark": method_benchmark(dataset, method, seed),
                    "result": result_file(dataset, method, seed),
                }
            )
            steps += [{"method": method, **step} for step in own]
        entries.append(
            {
                "dataset": dataset,
                "steps": steps,
                "train": result_file(dataset, "scdsec", seed),
            }
        )
    return entries


def scalability_inputs(wildcards):
    entries = scalability_entries()
    files = [step["benchmark"] for entry in entries for step in entry["steps"]]
    files += [result_file(e["dataset"], method, config["seeds"][0]) for e in entries for method in config["methods"]]
    return {"machine": "results/scalability/machine.tsv", "files": list(dict.fromkeys(files))}


def evaluation_outputs():
    """The per-dataset metrics tables of the run (part of `all`)."""
    return expand("results/{dataset}/metrics.tsv", dataset=config["run"])


# ---------------------------------------------------------------- figures and marker genes
# plot.smk and markers.smk: per run (a deep method × dataset × seed) and per experiment.

#: The methods whose figures and marker genes `all` makes for every dataset of `run` × seed
#: (the plot and marker rules accept any deep method when asked for its files).
PLOT_METHODS = ["scdsec"]


def has_true_labels(dataset):
    """Whether the dataset has true cell types: simulated, or `labels` named in the config."""
    entry = config["datasets"][dataset]
    return entry.get("simulate") is not None or bool(entry.get("labels"))


def run_context(wildcards):
    """The line under a run's figure titles: dataset · method · seed."""
    return f"{wildcards.dataset} · {wildcards.method} · seed {wildcards.seed}"


def plot_outputs():
    """Each run's figures and marker genes (part of `all`); the confusion matrix only where
    the dataset has true labels, the batches figure only where it has a batch key."""
    files = []
    for dataset in config["run"]:
        names = ["plots/loss.png", "plots/embeddings.png", "markers.tsv", "plots/markers_dotplot.png"]
        if has_true_labels(dataset):
            names.append("plots/confusion.png")
        if batch_key(dataset) is not None:
            names.append("plots/batches.png")
        files += [
            f"{run_dir(dataset, method, seed)}/{name}"
            for method in PLOT_METHODS
            for seed in config["seeds"]
            for name in names
        ]
    return files


#: The experiments' figures (their own targets: `snakemake benchmark`, …).
EXPERIMENT_FIGURES = [
    "results/benchmark/benchmark.png",
    "results/ablation/ablation.png",
    "results/sensitivity/sensitivity.png",
    "results/scalability/scalability.png",
]


def experiment_figures_for_report(wildcards):
    """Part of `all` outside a run only (`--report`, `--dag`, …: no executor is set): the
    experiments' figures that exist, so that a plain `snakemake --report report.html` shows
    them, while `snakemake` itself never reruns an experiment it was not asked for."""
    if workflow.executor_plugin is not None:
        return []
    return [path for path in EXPERIMENT_FIGURES if Path(path).exists()]


# ---------------------------------------------------------------- the end of a run
# The Snakefile's onsuccess and onerror handlers: what the run made, or how to go on.

#: Snakemake's own line when the user stops a run (Ctrl-C), in its log file.
INTERRUPTED = "Terminating processes on user request"


def _metrics_tables():
    """``{dataset: metrics.tsv}`` of each dataset whose evaluation was part of this run."""
    planned = {str(path) for job in workflow.dag.jobs for path in job.output}
    tables = {name: f"results/{name}/metrics.tsv" for name in config["datasets"]}
    return {name: path for name, path in tables.items() if path in planned}


def print_run_summary():
    """Print, after a successful run, each evaluated dataset's scores table with each method's
    NMI/ARI, K and how it was chosen, and the device it trained on (scdsec.workflow_summary)."""
    from scdsec.workflow_summary import run_summary

    gpu = workflow.global_resources.get("gpu")
    gpu = getattr(gpu, "value", gpu)
    text = run_summary(_metrics_tables(), gpu_requested=bool(gpu))
    if text:
        print(text, file=sys.stderr, flush=True)


def print_how_to_resume(log):
    """After a run stopped by Ctrl-C (Snakemake's line in its log files ``log``, a list in
    Snakemake 9, a path before): one line that says the same command resumes."""
    interrupted = False
    for path in [log] if isinstance(log, str | Path) else log or []:
        try:
            interrupted |= INTERRUPTED in Path(path).read_text(errors="replace")
        except OSError:
            pass
    if interrupted:
        print(
            "Interrupted: the same snakemake command resumes (finished steps are kept; a "
            "training goes on from its last checkpoint in results/checkpoints/)",
            file=sys.stderr,
            flush=True,
        )
