#!/usr/bin/env bash
# Train a default-style model (version 1 of src/cacscore/model/default/, and the fine-tuning runs behind
# version 4: benchmarks/reproduce_default_model.sh chains them) with ONE command:
#
#   benchmarks/train_default_model.sh [--device cuda|cpu] [--out DIR] [--work DIR]
#                                     [--n 400] [--n-val 20] [--max-minutes 2] [--seed 2021]
#                                     [--init MODEL_DIR] [--lr 2e-3] [--model-version 1]
#                                     [--loss dice_ce] [--val-metric dice] [--lesion-position-beta "1.2 2.6"]
#                                     [--distractor-probability aortic_root=0.6 ...]
#
# 1. generates a balanced phantom training cohort (--n cases, seed --seed, NIfTI, one worker per core)
#    and a separate balanced validation cohort (--n-val cases, seed --seed + 1); --lesion-position-beta
#    "A B" draws the training lesions' positions along the arteries from Beta(A, B) instead of the
#    proximal default, and each --distractor-probability KIND=P (repeatable) sets how often a training
#    patient has that distractor (e.g. more aortic root calcium beside the ostia as hard negatives); the
#    validation cohort keeps the defaults, so epochs are chosen on patient-like cases;
# 2. trains 5 members of the 3-D residual U-Net (arteries head, --loss: Dice + CE by default, bf16 autocast) with
#    --max-minutes as the time limit for all five members together; each member keeps its best
#    epoch by validation Dice; with --init, member k starts from member k of MODEL_DIR (fine-tuning)
#    and those starting weights compete as epoch 0;
# 3. writes the model folder --out (plan.json + member_<k>.safetensors in float16; checkpoints, cache
#    and the run stay in --work); copy it over src/cacscore/model/default/ to ship it (MODEL_CARD.md stays).
#
# Expected duration:
#   GPU (1x H200, 16 cores): about 4 minutes; measured 2026-11-26 for the shipped model: 240 s wall =
#     80 s for the 420 phantoms with 16 workers, 26 s of preprocessing, ~15 s of cuDNN warm-up and the
#     2 min of training (40 ms per step of 8 patches of 64x96x96 in bf16, 1.7 s per epoch of 40 steps
#     with validation), a few seconds of writing.
#     Pass a larger --max-minutes for a better model where device time allows (the shipped model used 2).
#   CPU (2 cores): ~10 min for the 420 phantoms (about 2.7 s per case per core) and then the time limit
#     (about 1.2 s per step of 2 patches of 48x96x96); on a CPU 2 minutes give a weak model: pass e.g.
#     --max-minutes 240 for a usable one. Measured 2026-11-26 for a fine-tuning run (--init the shipped
#     model, --n 200, --lr 3e-4, --max-minutes 85): 5 min for the 220 phantoms, 90 min in all; it was
#     not shipped (benchmarks/RESULTS.md says why).
#
# Works where cacscore is installed (a `cacscore` command on PATH or in .venv/) and on a bare
# machine with PyTorch: the package is then run from src/, and wheels in .whl/ (pydicom, SimpleITK,
# nibabel) are installed to /tmp/site when those imports fail.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
OUT=runs/default-model
WORK=runs/default-data
N_TRAIN=400
N_VAL=20
MAX_MINUTES=2
SEED=2021
INIT=()
LR=2e-3
VERSION=1
LOSS=dice_ce
VAL_METRIC=dice
POSITION=()
DISTRACTORS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --n) N_TRAIN=$2; shift 2 ;;
        --n-val) N_VAL=$2; shift 2 ;;
        --max-minutes) MAX_MINUTES=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --init) INIT=(--init "$2"); shift 2 ;;
        --lr) LR=$2; shift 2 ;;
        --model-version) VERSION=$2; shift 2 ;;
        --loss) LOSS=$2; shift 2 ;;
        --val-metric) VAL_METRIC=$2; shift 2 ;;
        --lesion-position-beta) read -r -a BETA <<< "$2"; POSITION=(--lesion-position-beta "${BETA[@]}"); shift 2 ;;
        --distractor-probability) DISTRACTORS+=(--distractor-probability "$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
WORKERS=$(nproc)

if [[ -x .venv/bin/cacscore ]]; then
    CAC=(.venv/bin/cacscore)
elif command -v cacscore >/dev/null 2>&1; then
    CAC=(cacscore)
else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    if ! python3 -c "import pydicom, SimpleITK" 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
    CAC=(python3 -c "import sys; from cacscore.cli.main import main; main(sys.argv[1:])")
fi
export PYTHONUNBUFFERED=1

start=$SECONDS
echo "== generating $N_TRAIN training and $N_VAL validation phantoms with $WORKERS workers"
"${CAC[@]}" phantom --n "$N_TRAIN" --seed "$SEED" --out "$WORK/train" --format nifti --balance \
    "${POSITION[@]}" "${DISTRACTORS[@]}" --workers "$WORKERS" --no-progress
"${CAC[@]}" phantom --n "$N_VAL" --seed "$((SEED + 1))" --out "$WORK/val" --format nifti --balance \
    --workers "$WORKERS" --no-progress
echo "== cohorts ready after $((SECONDS - start)) s"

if [[ "$DEVICE" == cuda ]]; then
    BATCH=8; PATCH=64,96,96; STEPS=40
else
    BATCH=2; PATCH=48,96,96; STEPS=20
fi
RESUME=()
[[ -f "$WORK/run/plan.json" ]] && RESUME=(--resume)
"${CAC[@]}" train --data "$WORK/train" --val-data "$WORK/val" --out "$WORK/run" --cache "$WORK/cache" --device "$DEVICE" \
    --members 5 --head arteries --epochs 400 --steps-per-epoch "$STEPS" --batch "$BATCH" --patch "$PATCH" \
    --loss "$LOSS" --val-metric "$VAL_METRIC" --lr "$LR" --seed "$SEED" --max-minutes "$MAX_MINUTES" --workers "$WORKERS" \
    --name cacscore-default --model-version "$VERSION" "${INIT[@]}" "${RESUME[@]}"
# Only the model itself goes to --out (checkpoints and the cache stay in --work).
mkdir -p "$OUT"
cp "$WORK/run/plan.json" "$WORK"/run/member_*.safetensors "$OUT/"
echo "== model written to $OUT after $((SECONDS - start)) s"
