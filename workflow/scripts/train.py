# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import step_log, train_step, write_params

# Ctrl-C: one line in the log and on the console, as `scdsec cluster` says it
resume = (
    "the same snakemake command resumes training from the last checkpoint in "
    f"{snakemake.params.checkpoint_dir}"
)
with step_log(snakemake.log[0], threads=snakemake.threads, resume=resume):
    train_step(
        snakemake.input[0],
        Path(snakemake.output.h5ad).parent,
        n_clusters=snakemake.params.n_clusters,
        params=snakemake.params.model,
        seed=snakemake.params.seed,
        batch_key=snakemake.params.batch_key,
        threads=snakemake.threads,
        deterministic=snakemake.params.deterministic,
        # not params: how often to save does not change the result, so it reruns nothing
        checkpoint_dir=snakemake.params.checkpoint_dir,
        checkpoint_every=snakemake.config["checkpoint_every"],
    )
    write_params(snakemake.output.params, snakemake.params.run_config)
# The run's checkpoint folder is gone once it has finished; so is the shared one when empty.
with contextlib.suppress(OSError):
    Path(snakemake.params.checkpoint_dir).parent.rmdir()
