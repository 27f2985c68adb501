"""Every rule has its own env file, every env file pins what envs/constraints.txt pins, and
(checked in the workflow tests through tests/env_imports.py) holds what its script imports."""

from __future__ import annotations

import importlib.util
import re

import pytest

from conftest import ROOT
from env_imports import assert_envs_hold_recorded_imports


def _update_envs():
    spec = importlib.util.spec_from_file_location("update_envs", ROOT / "envs" / "update_envs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rules_with_jobs() -> dict[str, str]:
    """``{rule name: env path}`` of the rules that run something (not pure target rules)."""
    found = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?:rule|checkpoint) ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            if not re.search(r"^\s+(script|shell|run):", block, flags=re.M):
                continue
            env = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            found[name] = env.group(1) if env else ""
    return found


def test_every_rule_with_a_job_has_its_own_env_file():
    rules = _rules_with_jobs()
    assert {"download", "qc", "normalize", "graph"} <= set(rules)
    for name, env in rules.items():
        assert env == f"../../envs/{name}.yaml", f"rule {name} has conda: {env!r}"
        assert (ROOT / "envs" / f"{name}.yaml").is_file()


def test_env_files_are_generated_from_the_constraints():
    update_envs = _update_envs()
    pins = update_envs.read_pins()
    for rule in update_envs.RULE_PACKAGES:
        text = (ROOT / "envs" / f"{rule}.yaml").read_text()
        assert text == update_envs.render(rule, pins), (
            f"envs/{rule}.yaml is out of date: run python envs/update_envs.py"
        )
        for name, version in re.findall(r"^\s+- ([A-Za-z0-9_.-]+)==(\S+)$", text, flags=re.M):
            assert pins[update_envs.canonical(name)][1] == version


def test_constraints_pin_the_installed_versions_of_the_core_stack():
    from importlib import metadata

    pins = _update_envs().read_pins()
    for name in ("scanpy", "anndata", "pynndescent", "numpy", "scipy", "snakemake"):
        assert metadata.version(name) == pins[name][1], name
    assert pins["pynndescent"][1] == "0.5.13"  # 0.7.0 breaks scanpy 1.11.5's neighbors
    assert metadata.version("torch").split("+")[0] == pins["torch"][1]


def test_the_import_check_names_a_package_missing_from_a_rules_env(tmp_path):
    """The workflow tests record each job's imports; a package outside the env is reported."""
    (tmp_path / "download.txt").write_text("anndata\nos\nscdsec\nsnakemake\n")
    assert assert_envs_hold_recorded_imports(tmp_path) == {"download"}
    (tmp_path / "download.txt").write_text("anndata\ntorch\n")
    with pytest.raises(AssertionError, match=r"rule download \(download.py\) imports torch"):
        assert_envs_hold_recorded_imports(tmp_path)
