#!/usr/bin/env bash
# The load benchmark: benchmarks/load.yaml's eight datasets through the default target with
# --cores 2, in a fresh folder; writes one row (wall seconds, jobs, failed jobs, the files two
# jobs wrote, machine, load average, cores) to the TSV named as the first argument.
#   bash benchmarks/load.sh OUT.tsv [WORKDIR]
set -euo pipefail
out=$(realpath -m "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
work=${2:-$(mktemp -d)}
mkdir -p "$work"
cp "$root/benchmarks/load.yaml" "$work/config.yaml"
cd "$work"
load_before=$(cut -d' ' -f1 /proc/loadavg)
start=$(date +%s.%N)
status=0
"$root/.venv/bin/snakemake" -s "$root/Snakefile" --cores 2 --keep-going > snakemake.log 2>&1 || status=$?
end=$(date +%s.%N)
"$root/.venv/bin/python" - "$out" "$work" "$start" "$end" "$status" "$load_before" <<'PY'
import collections, os, re, sys
from pathlib import Path
out, work, start, end, status, load_before = sys.argv[1:]
log = (Path(work) / "snakemake.log").read_text()
jobs = len(re.findall(r"^(?:local)?rule \w+:", log, flags=re.M))
failed = len(re.findall(r"^Error in rule", log, flags=re.M))
# every file a job declared: the outputs of all jobs, and any path named twice
outputs = re.findall(r"^\s+output: (.+)$", log, flags=re.M)
named = collections.Counter(p.strip() for line in outputs for p in line.split(","))
shared = sorted(p for p, n in named.items() if n > 1)
row = {
    "wall_seconds": round(float(end) - float(start), 1),
    "exit_status": status,
    "jobs": jobs,
    "failed_jobs": failed,
    "outputs_written_by_two_jobs": len(shared),
    "cores": 2,
    "machine_cpus": os.cpu_count(),
    "load_1min_before": load_before,
    "load_1min_after": os.getloadavg()[0],
}
Path(out).parent.mkdir(parents=True, exist_ok=True)
Path(out).write_text("\t".join(row) + "\n" + "\t".join(str(v) for v in row.values()) + "\n")
print(row, shared[:5])
PY
