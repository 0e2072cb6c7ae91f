#!/usr/bin/env bash
# The device check of the paper profile, in one run (sized for under 8 minutes on one H200 with 16 cores;
# an estimate until it has run on one):
#   1. benchmarks/train_throughput.py on the device: paper trunk, batch 256, 64x64, AE and FactorQVAE,
#      variants fp32, tf32, bf16 and bf16+compile (synchronized timing, warm-up reported apart);
#   2. synth3d rendered at 64x64 on the official grid (480,000 images; the quick protocol draws 10,000
#      InfoMEC samples) in the 3dshapes.h5 layout and prepared as shapes3d;
#   3. a 300-step paper-profile FactorQVAE on it with --device cuda;
#   4. `fqvae evaluate RUN --protocol quick`, the DCI fits on every core.
# Everything lives in a temporary FQVAE_HOME that is removed at the end. The last line of output is the
# summary: every figure, key=value, on one line. Any failure exits non-zero.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from any folder
#   bash benchmarks/gpu_check.sh --smoke    # the same sequence on the CPU with tiny sizes (a test runs it)
#
# Set-up: the script uses .venv beside the Makefile and runs `make setup` when it is missing.
# pyproject.toml pins torch==2.13.0; the wheel pip picks by default may not match the machine's CUDA, so
# on a GPU machine install a CUDA build of that version first, for example
#   make setup && .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
# The script downloads nothing once .venv exists; without --smoke it stops at once if torch cannot see
# a CUDA device. Set FQVAE_PYTHON to use another interpreter that has the package installed.
set -euo pipefail

SMOKE=0
case "${1:-}" in
    --smoke) SMOKE=1 ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--smoke]" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${FQVAE_PYTHON:-}" && ! -x .venv/bin/python ]]; then
    make setup
fi
PY="${FQVAE_PYTHON:-$ROOT/.venv/bin/python}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fqvae-gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export FQVAE_HOME="$WORK/home" FQVAE_PLAIN_PROGRESS=1
unset FQVAE_DATA FQVAE_DB

fqvae() { "$PY" -m fqvae_cli "$@"; }
now() { date +%s.%N; }
since() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
step() { echo "== gpu_check: $*" >&2; }

CORES="$("$PY" -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())")"
if [[ $SMOKE == 1 ]]; then
    DEVICE=cpu
    BENCH=(--device cpu --trunk compact --batch 4 --image-size 32 --iters 2 --warmup 1
           --variants fp32,bf16 --peak-size 256)
    SYNTH=(--grid small --image-size 64)
    STEPS=4
    TRAIN=(--batch-size 8 --set model.trunk=compact --set model.disc_width=32 --set train.threads=1
           --set train.checkpoint_every=2 --set train.log_every=2 --set eval.mse_images=64)
    PROTOCOL=tiny
    JOBS=1
    # A copy of experiments.yaml with a very small metric protocol (the tests' `tiny`).
    "$PY" - "$WORK/experiments.yaml" <<'EOF'
import sys
from pathlib import Path

import yaml

from fqvae_cli.experiments import experiments_path

data = yaml.safe_load(experiments_path().read_text())
data["protocols"]["tiny"] = {"dci_train": 300, "dci_test": 150, "infomec_n": 300}
Path(sys.argv[1]).write_text(yaml.safe_dump(data, allow_unicode=True))
EOF
    export FQVAE_EXPERIMENTS="$WORK/experiments.yaml"
else
    DEVICE=cuda
    BENCH=(--device cuda --trunk paper --batch 256 --image-size 64 --iters 30 --warmup 3
           --variants fp32,tf32,bf16,bf16+compile)
    SYNTH=(--grid official --image-size 64)
    STEPS=300
    TRAIN=(--set train.checkpoint_every=150 --set train.log_every=25)
    PROTOCOL=quick
    JOBS="$CORES"
    if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: torch $("$PY" -c 'import torch; print(torch.__version__)') sees no CUDA device; install a" \
             "CUDA build (see the header of this script) or run with --smoke." >&2
        exit 1
    fi
fi

# 1. Throughput of the training step on the device.
step "throughput benchmark (${BENCH[*]})"
"$PY" benchmarks/train_throughput.py --models ae,factorqvae "${BENCH[@]}" | tee "$WORK/bench.txt" >&2
# Table rows: model variant ms/step img/s ratio warm-up-s GFLOP/step of-peak(%)
BENCH_FIGS="$(awk '$1 == "ae" || $1 == "factorqvae" { sub(/%$/, "", $8)
    printf "%s/%s_ms=%s %s/%s_img_s=%s %s/%s_warmup_s=%s %s/%s_peak_pct=%s ",
        $1, $2, $3, $1, $2, $4, $1, $2, $6, $1, $2, $8 }' "$WORK/bench.txt")"
if [[ -z "$BENCH_FIGS" ]]; then
    echo "gpu_check: the benchmark printed no figures" >&2
    exit 1
fi

# 2. synth3d in the Shapes3D layout, prepared as shapes3d.
step "render synth3d (${SYNTH[*]}) and prepare it as shapes3d"
t0="$(now)"
fqvae data synth --out "$WORK/3dshapes.h5" "${SYNTH[@]}" >&2
fqvae data prepare shapes3d --source "$WORK/3dshapes.h5" >&2
rm -f "$WORK/3dshapes.h5"
DATA_S="$(since "$t0")"

# 3. A short paper-profile FactorQVAE.
step "train factorqvae, paper profile, $STEPS steps on $DEVICE"
t0="$(now)"
fqvae train --model factorqvae --dataset shapes3d --profile paper --steps "$STEPS" --device "$DEVICE" \
    --name gpu-check "${TRAIN[@]}" 2>&1 | tee "$WORK/train.log" >&2
TRAIN_S="$(since "$t0")"
# The loop's own figure (training iterations only, without start-up and data loading).
TRAIN_IMG_S="$(sed -n 's/.* iterations, \([0-9.]*\) images\/s.*/\1/p' "$WORK/train.log" | tail -n 1)"

# 4. Evaluation with the quick protocol.
step "evaluate, $PROTOCOL protocol, $JOBS DCI job(s)"
t0="$(now)"
fqvae evaluate gpu-check --protocol "$PROTOCOL" --jobs "$JOBS" --device "$DEVICE" --json > "$WORK/eval.json"
EVAL_S="$(since "$t0")"
EVAL_FIGS="$("$PY" -c "import json, sys; r = json.load(open(sys.argv[1]))
print(f\"D={r['dci_d']:.3f} InfoM={r['infom']:.3f} MSE={r['mse']:.6f}\")" "$WORK/eval.json")"

echo "gpu_check $([[ $SMOKE == 1 ]] && echo smoke || echo cuda): ${BENCH_FIGS}data_s=$DATA_S" \
     "train_${STEPS}_steps_s=$TRAIN_S train_img_s=${TRAIN_IMG_S:-nan} eval_s=$EVAL_S $EVAL_FIGS"
