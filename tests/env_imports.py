"""Checks that each rule's conda env names the packages its script really imports.

A workflow test runs its jobs with :func:`recording_env`; tests/import_recorder notes the
top-level packages imported by each job's script and the ``scdsec`` code it calls, and
:func:`assert_envs_hold_recorded_imports` checks each against the rule's env file (its
packages and what they require, as envs/update_envs.py writes them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from importlib import metadata
from pathlib import Path

from conftest import ROOT

RECORDER = ROOT / "tests" / "import_recorder"
# Imported by the preamble Snakemake writes into every script; that preamble puts Snakemake's
# own install on sys.path, so the env does not need it.
SNAKEMAKE_PREAMBLE = {"snakemake"}


def recording_env(record: Path) -> dict[str, str]:
    """The environment for a Snakemake run whose jobs record their imports into ``record``."""
    record.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(RECORDER), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "SCDSEC_IMPORT_RECORD": str(record)}


def _update_envs():
    spec = importlib.util.spec_from_file_location("update_envs", ROOT / "envs" / "update_envs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rules_by_script() -> dict[str, list[str]]:
    """``{script name without .py: [rules that run it]}`` from workflow/rules/*.smk."""
    found: dict[str, list[str]] = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?:rule|checkpoint) ", smk.read_text(), flags=re.M)[1:]:
            script = re.search(r"script:\s*\n\s*\"\.\./scripts/([\w-]+)\.py\"", block)
            if script:
                found.setdefault(script.group(1), []).append(block.split(":", 1)[0].strip())
    return found


def assert_envs_hold_recorded_imports(record: Path) -> set[str]:
    """Assert that every package recorded in ``record`` is in the env of each rule that runs
    that script; returns the rules checked."""
    update_envs = _update_envs()
    distributions = metadata.packages_distributions()
    scripts = rules_by_script()
    checked, missing = set(), []
    for path in sorted(record.glob("*.txt")):
        imported = set(path.read_text().split()) - set(sys.stdlib_module_names)
        imported -= {"scdsec", *SNAKEMAKE_PREAMBLE}
        assert path.stem in scripts, f"recorded script {path.stem}.py is run by no rule"
        for rule in scripts[path.stem]:
            env = update_envs.closure(update_envs.RULE_PACKAGES[rule])
            env |= {update_envs.canonical(n) for n in update_envs.RULE_OPTIONAL.get(rule, [])}
            for name in sorted(imported):
                dists = {update_envs.canonical(d) for d in distributions.get(name, [name])}
                if not dists & env:
                    missing.append(f"rule {rule} ({path.stem}.py) imports {name}")
            checked.add(rule)
    assert not missing, (
        "envs lack what their scripts import (add it to RULE_PACKAGES in envs/update_envs.py): "
        + "; ".join(missing)
    )
    return checked
