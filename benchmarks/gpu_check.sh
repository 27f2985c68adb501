#!/bin/bash
# The GPU check of issue 10, as one prepared command: the GPU tests and the one-million-cell
# scalability run on a bare GPU machine (Python 3.12 with PyTorch; no scanpy, anndata,
# pynndescent or pymetis there).
#
#   bash benchmarks/gpu_check.sh prepare        # here: wheels into resources/gpu/whl (≈ 40 MB)
#   bash benchmarks/gpu_check.sh run [CONFIG]   # there: install them, run the checks, write $OUT
#
# With the project's `device` tool: `prepare` here, then `run` with carry ["resources/gpu"]
# and timeout_s 600 (CONFIG defaults to benchmarks/scalability_gpu.yaml). Figures go to
# ${OUT:-results/gpu_check}: pytest.log, scalability/{scores,throughput,machine}.tsv and
# scalability.png. A run cut short keeps its finished steps: run it again on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=resources/gpu/whl
case "${1:-}" in
prepare)
    bash ../shared/gpu/fetch-wheels.sh "$WHEELS" pymetis pytest pluggy iniconfig
    ;;
run)
    CONFIG=${2:-benchmarks/scalability_gpu.yaml}
    OUT=${OUT:-results/gpu_check}
    mkdir -p "$OUT"
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site:$PWD
    python3 -c "import torch, scanpy, anndata, pymetis; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
    # GPU tests first (a few seconds each), then the scalability run.
    python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_model_batches.py \
        tests/test_evaluate.py 2>&1 | tee "$OUT/pytest.log" | tail -5 || true
    python3 benchmarks/scalability_steps.py --config "$CONFIG" --out "$OUT/scalability" \
        --threads "$(nproc)" 2>&1 | tee "$OUT/scalability.log"
    ;;
*)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
