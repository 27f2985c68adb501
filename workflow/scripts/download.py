# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import import_dataset, step_log

with step_log(snakemake.log[0], threads=snakemake.threads):
    import_dataset(
        snakemake.params.entry,
        snakemake.output[0],
        name=snakemake.wildcards.dataset,
        cache_dir=snakemake.params.cache_dir,
    )
