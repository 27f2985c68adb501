# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.baselines import baseline_step
from scdsec.pipeline import step_log, write_params

with step_log(snakemake.log[0], threads=snakemake.threads):
    baseline_step(
        snakemake.input.counts,
        Path(snakemake.output.h5ad).parent,
        method=snakemake.params.method,
        n_clusters=snakemake.params.n_clusters,
        seed=snakemake.params.seed,
        params=snakemake.params.baselines,
        graph=snakemake.input.graph or None,
        **snakemake.params.batch,  # batch_key and batch_correction, with a batch key
    )
    write_params(snakemake.output.params, snakemake.params.run_config)
