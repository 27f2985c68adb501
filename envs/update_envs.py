"""Write one conda env file per workflow rule from the pins in envs/constraints.txt.

Conda cannot be reached from the machines this project is developed on, so the env files
are not solved here: they are generated from the same pins that the README's pip set-up
uses (and that the test suite runs with), so both install the same versions. Each env holds
the packages its rule's step imports plus everything those need, all pinned.
tests/test_envs.py fails when a file is out of date. Run after changing the pins:

    python envs/update_envs.py
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = "3.11"

# What each rule's step imports (beyond the standard library and the scdsec package itself);
# every step imports threadpoolctl (scdsec.settings.limit_threads), most through scikit-learn.
RULE_PACKAGES: dict[str, list[str]] = {
    "download": ["anndata", "h5py", "loompy", "pandas", "scipy", "numpy", "threadpoolctl"],
    "qc": ["anndata", "scanpy", "pynndescent"],
    "normalize": ["anndata", "scanpy", "pynndescent", "scikit-misc"],
    "graph": ["anndata", "scikit-learn", "pynndescent", "harmonypy"],
    "train": [
        "anndata",
        "torch",
        "scikit-learn",
        "scanpy",
        "leidenalg",
        "igraph",
        "tqdm",
        "pymetis",
    ],
    "baseline": [
        "anndata",
        "scanpy",
        "pynndescent",
        "scikit-learn",
        "leidenalg",
        "igraph",
        "harmonypy",
    ],
    "scvi": ["anndata", "scanpy", "pynndescent", "scikit-learn", "leidenalg", "igraph", "torch"],
    "evaluate": ["anndata", "pandas", "scikit-learn", "scipy"],
    "benchmark_scores": ["anndata", "pandas", "scikit-learn", "scipy"],
    "ablation_scores": ["anndata", "pandas", "scikit-learn", "scipy"],
    "count_genes": ["anndata", "h5py", "threadpoolctl"],
    "machine": ["anndata", "torch", "pandas", "scikit-learn", "scipy"],
    "scalability_scores": ["anndata", "pandas", "scikit-learn", "scipy"],
    "sensitivity_scores": ["anndata", "pandas", "scikit-learn", "scipy"],
    "plot_loss": ["anndata", "matplotlib", "pandas", "scikit-learn", "scipy"],
    "plot_embeddings": ["anndata", "matplotlib", "pandas", "igraph", "scikit-learn", "scipy"],
    "plot_confusion": ["anndata", "matplotlib", "pandas", "scikit-learn", "scipy"],
    "plot_batches": ["anndata", "matplotlib", "pandas", "igraph", "scikit-learn", "scipy"],
    "plot_benchmark": ["anndata", "matplotlib", "pandas", "scikit-learn", "scipy"],
    "plot_ablation": ["anndata", "matplotlib", "pandas", "scikit-learn", "scipy"],
    "plot_sensitivity": ["anndata", "matplotlib", "pandas", "scikit-learn", "scipy"],
    "plot_scalability": ["anndata", "matplotlib", "pandas", "scikit-learn", "scipy"],
    "markers": ["anndata", "scanpy", "pynndescent"],
    "plot_markers": ["anndata", "scanpy", "pynndescent", "matplotlib"],
}
# Optional packages (pyproject extras) that CI does not install, so their requirements cannot be
# read from installed metadata: written with their own pin from constraints.txt; pip resolves
# what they require within the env.
RULE_OPTIONAL: dict[str, list[str]] = {
    "scvi": ["scvi-tools"],
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = HERE / "constraints.txt") -> dict[str, tuple[str, str]]:
    """``{canonical name: (name as written, version)}`` from a pip constraints file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonical(name)] = (name, version)
    return pins


def closure(packages: list[str]) -> set[str]:
    """The packages plus everything they require (no extras), from installed metadata."""
    seen: set[str] = set()
    todo = [canonical(p) for p in packages]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for req in metadata.requires(name) or []:
            if "extra ==" in req:
                continue
            if ";" in req and not _marker_holds(req.split(";", 1)[1]):
                continue
            todo.append(canonical(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0]))
    return seen


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate({"extra": ""})


# Said in every env that installs torch.
TORCH_NOTE = (
    "# torch from PyPI: on Linux x86-64 its wheel is the CUDA build (CUDA runtime bundled,\n"
    "# needs only the NVIDIA driver), so this env trains on a GPU; elsewhere the CPU build."
)


def render(rule: str, pins: dict[str, tuple[str, str]]) -> str:
    """The env file text for one rule."""
    names = sorted(closure(RULE_PACKAGES[rule]))
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"envs/constraints.txt lacks pins for {missing} (needed by rule {rule})")
    lines = [
        f"# Env of the `{rule}` rule. Generated by envs/update_envs.py from envs/constraints.txt:",
        "# edit those, not this file. Not solved on the development machines (no conda there).",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
        f"  - python={PYTHON}",
        "  - pip",
        "  - pip:",
    ]
    lines += [f"      - {pins[n][0]}=={pins[n][1]}" for n in names]
    if "torch" in names:
        lines.insert(lines.index("dependencies:"), TORCH_NOTE)
    optional = [canonical(n) for n in RULE_OPTIONAL.get(rule, [])]
    lines += [f"      - {pins[n][0]}=={pins[n][1]}" for n in optional]
    return "\n".join(lines) + "\n"


def main() -> int:
    pins = read_pins()
    for rule in RULE_PACKAGES:
        (HERE / f"{rule}.yaml").write_text(render(rule, pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
