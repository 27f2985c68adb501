# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import normalize_step, step_log, write_params

settings = snakemake.params.settings
with step_log(snakemake.log[0], threads=snakemake.threads):
    normalize_step(snakemake.input[0], snakemake.output.h5ad, **settings["normalize"])
    write_params(snakemake.output.settings, settings)
