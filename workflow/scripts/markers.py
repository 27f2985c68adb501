# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.markers import markers_step
from scdsec.pipeline import step_log

with step_log(snakemake.log[0], threads=snakemake.threads):
    markers_step(
        snakemake.input[0],
        snakemake.output.tsv,
        html=snakemake.output.html,
        **dict(snakemake.params.items()),
    )
