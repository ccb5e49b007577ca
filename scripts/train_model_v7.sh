#!/usr/bin/env bash
# Model version 7 and its leave-one-family-out companions in ONE run on one GPU machine (1 GPU, 16 cores).
# Sized to end within about 9.5 minutes on an NVIDIA H200 with 16 cores (estimate from the phantom and
# training speeds in benchmarks/RESULTS.md; not yet run there: as of 2026-12-04 the chain has only been
# dry-run on 2 CPU cores with the tiny sizes below).
#
#   scripts/train_model_v7.sh            # environment: OUT (results), WORK (scratch), DEVICE, sizes below
#
# 1. generates the training data of both phantom families in parallel: classic generator version 2
#    (domain randomisation, seed 7001), the independent sdf family (seed 7101), classic version 1 for
#    replay (seed 7201), and their validation cohorts (7002, 7102);
# 2. trains three five-member ensembles at once on the one GPU:
#      v7          fine-tuned from the shipped model on classic v2 + sdf, classic v1 replayed, lesion
#                  filter refitted on the validation cases of both families (the shipped model);
#      loo-classic from scratch on classic v2 only  -> judged on the sdf family;
#      loo-sdf     from scratch on sdf only         -> judged on the classic family;
#    while the test cohorts are generated on the free cores (sdf 7301, classic v2 7401, classic v1
#    122001: the fourth test cohort of version 6);
# 3. judges each model with benchmarks/bench_quality.py on the cohorts it was not trained on.
# Results: OUT/{v7,loo-classic,loo-sdf}.tar (model folders), OUT/eval.tar (bench_quality JSON and
# text), OUT/log.txt. Every phase is bounded so that the run ends within DEADLINE seconds.
#
# A CPU dry run of the whole chain with tiny sizes:
#   DEVICE=cpu PY=.venv/bin/python N_TRAIN=3 N_REPLAY=2 N_VAL=2 N_TEST=3 MIN_V7=0.6 MIN_LOO=0.4 \
#       BATCH=2 PATCH=48,96,96 STEPS=4 OUT=runs/v7-dry WORK=runs/v7-dry-work scripts/train_model_v7.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/v7-out}; W=${WORK:-/tmp/v7}; DEVICE=${DEVICE:-cuda}; PY=${PY:-python3}
N_TRAIN=${N_TRAIN:-180}; N_REPLAY=${N_REPLAY:-80}; N_VAL=${N_VAL:-16}; N_TEST=${N_TEST:-100}; N_DEV=${N_DEV:-30}
MIN_V7=${MIN_V7:-3.5}; MIN_LOO=${MIN_LOO:-3.0}; BATCH=${BATCH:-8}; PATCH=${PATCH:-64,96,96}; STEPS=${STEPS:-40}
DEADLINE=${DEADLINE:-560}
start=$SECONDS
mkdir -p "$OUT" "$W/eval"
exec > >(tee -a "$OUT/log.txt") 2>&1
pids=()
waitall() {  # wait for the jobs started so far (a bare `wait` would also wait for the log's tee)
    local pid; for pid in "${pids[@]}"; do wait "$pid"; done; pids=()
}
log() { echo "[$((SECONDS - start)) s] $*"; }
left() { echo $((DEADLINE - (SECONDS - start))); }

if ! "$PY" -c "import pydicom, SimpleITK, nibabel" 2>/dev/null; then
    # A bare GPU machine: SimpleITK travels as an xz tarball of its wheel's contents (the wheel itself is
    # too large for the 64 MiB that travel), pydicom and nibabel as wheels.
    mkdir -p /tmp/site && tar xJf .whl/sitk.tar.xz -C /tmp/site \
        && "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
        || { log "could not install the wheels"; exit 1; }
    export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cac() { "$PY" -c "import sys; from cacscore.cli.main import main; main(sys.argv[1:])" "$@"; }
log "start: $(nproc) cores, device $DEVICE, $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")')"

gen() {  # gen NAME ARGS...: one cohort into $W/NAME, its log beside it
    local name=$1; shift
    cac phantom --out "$W/$name" --format nifti --balance --no-progress "$@" > "$W/$name.log" 2>&1 \
        && log "cohort $name: $(tail -1 "$W/$name.log")" || { log "cohort $name FAILED:"; tail -5 "$W/$name.log"; }
}
gen a2 --n "$N_TRAIN" --seed 7001 --generator-version 2 --workers 6 &
pids+=($!)
gen sdf --n "$N_TRAIN" --seed 7101 --family sdf --workers 6 &
pids+=($!)
gen a1 --n "$N_REPLAY" --seed 7201 --workers 2 &
pids+=($!)
gen a2val --n "$N_VAL" --seed 7002 --generator-version 2 --workers 1 &
pids+=($!)
gen sdfval --n "$N_VAL" --seed 7102 --family sdf --workers 1 &
pids+=($!)
waitall
"$PY" scripts/merge_cohorts.py "$W/all" "$W/a2" "$W/sdf" && "$PY" scripts/merge_cohorts.py "$W/allval" "$W/a2val" "$W/sdfval" \
    || { log "merge failed"; exit 1; }
log "training data ready"

train() {  # train NAME ARGS...: one ensemble into $W/NAME
    local name=$1; shift
    cac train --out "$W/$name" --cache "$W/cache-$name" --device "$DEVICE" --members 5 --head arteries --epochs 400 \
        --steps-per-epoch "$STEPS" --batch "$BATCH" --patch "$PATCH" --loss dice_ce --seed 2027 --workers 5 "$@" \
        > "$W/$name.log" 2>&1
    local rc=$?
    grep -iE "dice|member|filter|error|warning" "$W/$name.log" | tail -n 25 | sed "s/^/  $name: /"
    log "training $name ended (exit $rc)"
}
pack() {  # pack NAME: the model folder $W/NAME into $OUT/NAME.tar
    local name=$1
    if [[ -f "$W/$name/plan.json" ]]; then
        tar cf "$OUT/$name.tar" -C "$W" "$name/plan.json" $(cd "$W" && ls "$name"/member_*.safetensors)
        log "model $name packed"
    else
        log "model $name FAILED:"; tail -n 15 "$W/$name.log"
    fi
}
quality() {  # quality MODEL COHORT: bench_quality of one model on one cohort, bounded by the deadline
    local model=$1 cohort=$2 name="$1-on-$2"
    [[ -f "$W/$model/plan.json" ]] || { log "no model $model"; return; }
    while [[ ! -f "$W/$cohort/cases.csv" ]]; do sleep 2; done
    timeout "$(left)" "$PY" benchmarks/bench_quality.py --n "$N_TEST" --cohort "$W/$cohort" --model "$W/$model" \
        --device "$DEVICE" --workers 2 --no-baseline --json "$W/eval/$name.json" > "$W/eval/$name.txt" 2>&1
    log "quality $name (exit $?):"; grep -iE "accuracy|harrell|f1|icc|sensitivity" "$W/eval/$name.txt" | head -n 12
    tar cf "$OUT/eval.tar" -C "$W" eval
}

gen sdftest --n "$N_TEST" --seed 7301 --family sdf --workers 2 &
pids+=($!)
gen a2test --n "$N_TEST" --seed 7401 --generator-version 2 --workers 2 &
pids+=($!)
gen v1test --n "$N_TEST" --seed 122001 --workers 2 &
pids+=($!)
gen dev --n "$N_DEV" --seed 7003 --generator-version 2 --workers 1 &
pids+=($!)
gen sdfdev --n "$N_DEV" --seed 7103 --family sdf --workers 1 &
pids+=($!)
(
    # The shipped model: fine-tuned on both families, then its lesion filter fitted on development cohorts
    # of both families that training never saw (not bounded by the training time limit).
    train v7-members --data "$W/all" --val-data "$W/allval" --init src/cacscore/model/default --replay "$W/a1" \
        --replay-fraction 0.2 --lesion-filter drop --lr 1e-3 --max-minutes "$MIN_V7" --name cacscore-default \
        --model-version 7
    while [[ ! -f "$W/dev/cases.csv" || ! -f "$W/sdfdev/cases.csv" ]]; do sleep 2; done
    timeout "$(left)" "$PY" -c "import sys; from cacscore.cli.main import main; main(sys.argv[1:])" train-lesion-filter \
        --model "$W/v7-members" --data "$W/dev" --data "$W/sdfdev" --out "$W/v7" --model-version 7 --device "$DEVICE" > "$W/v7-filter.log" 2>&1
    log "lesion filter (exit $?):"; tail -n 15 "$W/v7-filter.log"
    pack v7
    for cohort in v1test sdftest a2test; do quality v7 "$cohort" & done; wait
) &
pids+=($!)
(
    train loo-classic --data "$W/a2" --val-data "$W/a2val" --lr 2e-3 --max-minutes "$MIN_LOO" \
        --name cacscore-loo-classic --model-version 7-loo-classic
    pack loo-classic
    quality loo-classic sdftest
) &
pids+=($!)
(
    train loo-sdf --data "$W/sdf" --val-data "$W/sdfval" --lr 2e-3 --max-minutes "$MIN_LOO" \
        --name cacscore-loo-sdf --model-version 7-loo-sdf
    pack loo-sdf
    quality loo-sdf a2test
) &
pids+=($!)
waitall
tar cf "$OUT/eval.tar" -C "$W" eval
log "done"
