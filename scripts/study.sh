#!/bin/sh
# The study (issue 9): the default problem at three budgets, every network trained once per seed,
# with the uniform and random baselines, as DVC experiments; then study_table.py turns their
# metrics into study/ (results.csv, table.md, top1_vs_flops.png).
#
#   sh scripts/study.sh                       # the study (see README for its time on a 2-core CPU)
#   BUDGETS=6M SEEDS='0 1' EPOCHS=1 EXTRA='-S data.fraction=0.05' sh scripts/study.sh   # a tiny check
#
# How it uses the cores: a training stage does not read train.seeds, so DVC's run-cache lets
# experiments share trainings. The first (budget, seed) shard runs alone with every thread; the
# other shards run JOBS at a time with one thread each (two 1-thread trainings do ~1.75x the
# images/s of one 2-thread training here); last, one experiment per budget with all the seeds
# (named study-<budget>) finds every training in the run-cache and reports the verdict.
# The search and latency stages do not read the budget either, but DVC keeps stages with
# `cache: false` outputs out of its run-cache, so experiments share them only through the
# committed dvc.lock: commit `dvc repro search latency` first (checked below), or every shard
# searches again.
#
# Run from a clean git checkout of the project (dvc exp needs committed code).
set -eu
if ! dvc status search latency | grep -q "up to date"; then
    echo "study: search and latency are not up to date in dvc.lock: run 'dvc repro search latency' and commit dvc.lock first" >&2
    exit 1
fi
BUDGETS=${BUDGETS:-6M 8M 10M}  # inside what the default search covers (5.2M..26.1M on the committed run)
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-2}
JOBS=${JOBS:-2}
EXTRA=${EXTRA:-}
COMMON="-S train.epochs=$EPOCHS -S train.variants=[optimized,uniform,random] $EXTRA"

drain() {  # start the queue with $1 workers and wait until nothing is queued or running
    dvc queue start -j "$1"
    sleep 20
    while status=$(dvc queue status 2>/dev/null) && echo "$status" | grep -Eq "Queued|Running"; do
        # Workers can die (seen once): tasks still queued and none running get fresh workers.
        if echo "$status" | grep -q "Worker status: 0 active"; then dvc queue start -j "$1"; fi
        sleep 30
    done
    dvc queue stop 2>/dev/null || true
}

first_budget=${BUDGETS%% *}
first_seed=${SEEDS%% *}
# shellcheck disable=SC2086  # COMMON holds several -S options
dvc exp run --queue $COMMON -S "search.flops=$first_budget" -S "train.seeds=[$first_seed]"
drain 1
for budget in $BUDGETS; do
    for seed in $SEEDS; do
        [ "$budget $seed" = "$first_budget $first_seed" ] && continue
        # shellcheck disable=SC2086
        dvc exp run --queue $COMMON -S "search.flops=$budget" -S "train.seeds=[$seed]" -S resources.threads=1
    done
done
drain "$JOBS"
seeds_list="[$(echo "$SEEDS" | tr ' ' ',')]"
for budget in $BUDGETS; do
    # shellcheck disable=SC2086
    dvc exp run --queue --name "study-$budget" $COMMON -S "search.flops=$budget" -S "train.seeds=$seeds_list"
done
drain 1
dvc queue status
python scripts/study_table.py --out study
