"""What OpenMP's wait policy costs a training step, idle and with one core taken by another job.

Each run is a fresh process that imports ``scdsec.pipeline`` and calls
``scdsec.settings.limit_threads`` as a workflow step does, then trains scDSEC (1,500 simulated
cells, 5 types, 10 + 5 epochs) with ``--threads``; ``OMP_WAIT_POLICY`` is ``PASSIVE`` (the
steps' default now) or ``ACTIVE`` (spinning, the runtime's usual behaviour), set before the
process starts. "busy": a process spinning on one core (``yes``) beside the run. Writes one row
per run (policy, load, threads, seconds, load average before) to ``--out``:

    python benchmarks/omp_wait_policy.py --threads 2 --repeats 2 --out RESULTS.tsv
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pandas as pd

CHILD = """
import sys, time
from scdsec import pp
from scdsec.settings import limit_threads
from scdsec.simulate import simulate_counts
limit_threads({threads})
from scdsec.model import SCDSEC
adata = pp.prepare(simulate_counts(1500, 1000, 5, seed=0))
start = time.perf_counter()
SCDSEC(adata, 5, seed=0).train(pretrain_epochs=10, epochs=5, threads={threads})
print(time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = []
    for repeat in range(args.repeats):
        for load in ("idle", "busy"):
            burner = (
                subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if load == "busy" else None
            )
            try:
                time.sleep(1)
                for policy in ("ACTIVE", "PASSIVE"):
                    env = {**os.environ, "OMP_WAIT_POLICY": policy}
                    before = os.getloadavg()[0]
                    code = CHILD.format(threads=args.threads)
                    out = subprocess.run(
                        [sys.executable, "-c", code],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    seconds = float(out.stdout.strip().splitlines()[-1])
                    rows.append(
                        {
                            "policy": policy,
                            "load": load,
                            "repeat": repeat,
                            "threads": args.threads,
                            "seconds": round(seconds, 2),
                            "load_before": round(before, 2),
                            "cpus": os.cpu_count(),
                        }
                    )
                    print(rows[-1], flush=True)
            finally:
                if burner is not None:
                    burner.kill()
    pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
