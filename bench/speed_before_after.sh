#!/usr/bin/env bash
# Issue #19's before/after timings, alternated in one session on an otherwise idle machine:
# trainer vs plain loop (1 thread), demo wall time, dashboard first renders (bytecode cached), and
# the trainer with the other core kept busy by a pure-Python loop.
#
#   bash bench/speed_before_after.sh [BEFORE_REV] [NO_THREADS_REV] [OUT]
#
# BEFORE_REV (default 0cce14e, the code before this change) and NO_THREADS_REV (default b0cdf88^,
# the code before train.threads existed) are checked out as git worktrees under OUT (default
# /tmp/speed_before_after); the current tree is "after". Logs and JSON land in OUT; the figures
# are copied into docs/benchmarks.md by hand ("Speed: before and after issue #19").
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
A=$PWD
BEFORE=${1:-0cce14e}; NOTHREADS=${2:-b0cdf88^}; OUT=${3:-/tmp/speed_before_after}
PY=$A/.venv/bin/python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT"
B=$OUT/before; T=$OUT/no_threads
[ -d "$B" ] || git worktree add -f "$B" "$BEFORE" -q
[ -d "$T" ] || git worktree add -f "$T" "$NOTHREADS" -q
log() { echo "=== $(date +%H:%M:%S) $*"; uptime; }
for r in 1 2; do
  log "trainer before $r"; (cd "$B" && OMP_NUM_THREADS=1 PYTHONPATH=$B $PY bench/speed_scale.py --parts trainer --threads 1 --out-json "$OUT/trainer_before_$r.json" > "$OUT/trainer_before_$r.log" 2>&1)
  log "trainer after $r"; (OMP_NUM_THREADS=1 $PY bench/speed_scale.py --parts trainer --threads 1 --out-json "$OUT/trainer_after_$r.json" > "$OUT/trainer_after_$r.log" 2>&1)
done
for r in 1 2; do
  log "demo before $r"; (cd "$B" && /usr/bin/time -f "%e" -o "$OUT/demo_before_$r.time" env OMP_NUM_THREADS=1 PYTHONPATH=$B $PY -m multimodal.cli demo --out "$OUT/demo_before_$r" > "$OUT/demo_before_$r.log" 2>&1)
  log "demo after $r"; (/usr/bin/time -f "%e" -o "$OUT/demo_after_$r.time" env OMP_NUM_THREADS=1 $PY -m multimodal.cli demo --out "$OUT/demo_after_$r" > "$OUT/demo_after_$r.log" 2>&1)
done
# bytecode written once, as a pip install does
export PYTHONPYCACHEPREFIX=$OUT/pycache; unset PYTHONDONTWRITEBYTECODE
$PY -c "import multimodal.dashboard.patient, streamlit"; (cd "$B" && PYTHONPATH=$B $PY -c "import multimodal.dashboard.patient")
for r in 1 2; do
  for mode in cohort direct; do
    flag=""; [ $mode = direct ] && flag="--direct"
    log "dashboard $mode before $r"; (cd "$B" && OMP_NUM_THREADS=1 PYTHONPATH=$B $PY bench/dashboard.py --run "$OUT/demo_before_1/fusion" $flag > "$OUT/dash_${mode}_before_$r.log" 2>&1)
    log "dashboard $mode after $r"; (OMP_NUM_THREADS=1 $PY bench/dashboard.py --run "$OUT/demo_after_1/fusion" $flag > "$OUT/dash_${mode}_after_$r.log" 2>&1)
  done
done
export PYTHONDONTWRITEBYTECODE=1; unset PYTHONPYCACHEPREFIX
$PY -c "while True: pass" & BUSY=$!
sleep 2
log "busy core: no train.threads, 1 thread"; (cd "$T" && PYTHONPATH=$T $PY bench/speed_scale.py --parts trainer --threads 1 --out-json "$OUT/busy_before_t1.json" > "$OUT/busy_before_t1.log" 2>&1)
log "busy core: no train.threads, 2 threads"; (cd "$T" && PYTHONPATH=$T $PY bench/speed_scale.py --parts trainer --threads 2 --out-json "$OUT/busy_before_t2.json" > "$OUT/busy_before_t2.log" 2>&1)
log "busy core: 2 threads, train.threads auto"; ($PY bench/speed_scale.py --parts trainer --threads 2 --trainer-threads auto --trainer-repeats 1 --out-json "$OUT/busy_after_auto.json" > "$OUT/busy_after_auto.log" 2>&1)
kill $BUSY
log done
