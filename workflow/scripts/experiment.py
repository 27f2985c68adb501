# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
# Used by the `ablation_scores` and `sensitivity_scores` rules.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.evaluate import experiment_step
from scdsec.pipeline import step_log

with step_log(snakemake.log[0], threads=snakemake.threads):
    experiment_step(
        snakemake.output[0],
        entries=snakemake.params.entries,
        graphs=snakemake.params.graphs,
        id_columns=snakemake.params.id_columns,
    )
