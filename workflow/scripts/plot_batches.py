# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import step_log
from scdsec.plotting import batches_plot_step

with step_log(snakemake.log[0], threads=snakemake.threads):
    batches_plot_step(
        snakemake.input[0],
        snakemake.output[0],
        **dict(snakemake.params.items()),
    )
