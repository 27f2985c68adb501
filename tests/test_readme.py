"""Every command in the README's fenced ``bash`` blocks works as written.

Each command is either run here, in a copy of the repository as a user's clone, exactly as
written (``.venv/bin/`` is this environment), or dry-run (``-n``) where running it means a
long or GPU job, or named in :data:`CHECKED_ELSEWHERE` with where it is checked. A command
the README gains without a place here fails the test, so the two cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SHARED_DATA

#: README commands checked by other tests or by CI (first words → where).
CHECKED_ELSEWHERE = {
    'python3 -m venv .venv && .venv/bin/pip install -c envs/constraints.txt -e ".[workflow]"': (
        "the set-up and main job: the fresh-clone check before each release"
    ),
    'python3 -m venv .venv && .venv/bin/pip install -c envs/constraints.txt -e ".[test]"': (
        ".ci/run (CI)"
    ),
    ".venv/bin/snakemake --report report.html": (
        "test_workflow.py::test_demo_runs_whole_and_its_report_embeds_every_figure"
    ),
    ".venv/bin/snakemake --workflow-profile profiles/slurm": (
        "test_workflow.py::test_slurm_profile_gives_training_its_gpu_and_threads"
    ),
}
#: Commands run for real (quick on the demo); every other snakemake command is dry-run.
RUN = ("scdsec simulate", "scdsec cluster", "python benchmarks/screen.py")

MY_DATASETS = {  # the README's my_datasets.yaml, as a user writes it
    "run": ["small"],
    "datasets": {"small": {"source": "data.h5ad", "labels": "cell_type", "n_clusters": 3}},
}


def readme_commands() -> list[str]:
    """The commands of the README's ``bash`` blocks (continuation lines joined, comments cut)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(" ".join(line.split()))
    return commands


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository's tracked files, plus a small data.h5ad and my_datasets.yaml."""
    where = tmp_path_factory.mktemp("clone")
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, where / name)
    shared = where.parent / "shared"
    if SHARED_DATA.is_dir() and not shared.exists():
        shared.symlink_to(SHARED_DATA.parent)
    from scdsec.simulate import simulate_counts

    simulate_counts(200, 300, 3, seed=0).write_h5ad(where / "data.h5ad")
    (where / "my_datasets.yaml").write_text(yaml.safe_dump(MY_DATASETS))
    return where


def test_every_readme_command_has_a_check():
    commands = readme_commands()
    assert len(commands) > 10
    for command in commands:
        known = any(command.startswith(k) for k in (*CHECKED_ELSEWHERE, *RUN))
        assert known or command.startswith(".venv/bin/snakemake"), (
            f"README command without a check: {command!r} — add it to tests/test_readme.py"
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [c for c in readme_commands() if not any(c.startswith(k) for k in CHECKED_ELSEWHERE)],
)
def test_readme_command_works_as_written(clone, command):
    bin_dir = Path(sys.executable).parent
    words = shlex.split(command.replace(".venv/bin/", f"{bin_dir}/"))
    if words[0] in ("scdsec", "python"):
        words[0] = str(bin_dir / words[0])
    dry = Path(words[0]).name == "snakemake"
    if dry:
        words.append("-n")
    proc = subprocess.run(words, cwd=clone, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    if "shared_data.yaml" in command and not SHARED_DATA.is_dir():
        assert proc.returncode != 0 and "shared" in output  # says that the data is missing
        return
    assert proc.returncode == 0, f"{command}\n{output[-3000:]}"
    if dry:
        assert "Traceback" not in output
