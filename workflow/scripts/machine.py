# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import step_log
from scdsec.scalability import machine_step

with step_log(snakemake.log[0], threads=snakemake.threads):
    machine_step(snakemake.output[0], threads=snakemake.threads)
