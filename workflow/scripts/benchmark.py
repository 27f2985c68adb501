# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.evaluate import benchmark_step
from scdsec.pipeline import step_log

with step_log(snakemake.log[0], threads=snakemake.threads):
    benchmark_step(
        list(snakemake.input),
        snakemake.output.scores,
        snakemake.output.table,
        methods=snakemake.params.methods,
        datasets=snakemake.params.datasets,
    )
