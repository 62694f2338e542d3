#!/bin/sh
# The study (issue 9): the default problem at three budgets, every network trained once per seed,
# with the uniform and random baselines, as DVC experiments; then study_table.py turns their
# metrics into study/ (results.csv, table.md, top1_vs_flops.png).
#
#   sh scripts/study.sh                       # the study (see README for its time on a 2-core CPU)
#   BUDGETS=6M SEEDS='0 1' EPOCHS=1 EXTRA='-S data.fraction=0.05' sh scripts/study.sh   # a tiny check
#   NAME=stacked VARIANTS=[optimized,uniform] EXTRA='-S extrapolate.point=stacked' sh scripts/study.sh   # the other point rule
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
# DIRECT=1 adds the direct-search baseline: each budget once more with the identity projection
# (plain AutoSlim on the full problem), named study-<budget>-direct, all seeds; study_table.py
# puts its network beside the projected search's with both searches' measured cost. These run
# one after another in the workspace, so the direct supernet and search run once and the later
# budgets find them in the workspace's dvc.lock; the workspace is restored afterwards. On the
# default problem the direct supernet trains a network ~9x the projected one's FLOPs on 5x the
# images: hours on a 2-core CPU (see README), minutes on a GPU.
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
DIRECT=${DIRECT:-0}
NAME=${NAME:-study}  # experiments are named <NAME>-<budget>: another name for a variant of the study
VARIANTS=${VARIANTS:-[optimized,uniform,random]}
COMMON="-S train.epochs=$EPOCHS -S train.variants=$VARIANTS $EXTRA"

workers() {  # how many queue workers are alive (busy or idle)
    dvc queue status 2>/dev/null | sed -n 's/.*Worker status: \([0-9]*\) active, \([0-9]*\) idle.*/\1 + \2/p'
}

drain() {  # keep $1 workers busy until nothing is queued or running
    # No `dvc queue stop` between phases: a stop reaches workers started right after it, which
    # then quit after one task (seen here: a phase of two jobs ran on one). Workers are topped up
    # instead, also when one dies (seen once: tasks queued and none running).
    while status=$(dvc queue status 2>/dev/null) && echo "$status" | grep -Eq "Queued|Running"; do
        alive=$(workers)
        alive=$((${alive:-0}))
        if echo "$status" | grep -q "Queued" && [ "$alive" -lt "$1" ]; then
            dvc queue start -j "$(($1 - alive))"
            sleep 20
        fi
        sleep 30
    done
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
    dvc exp run --queue --name "$NAME-$budget" $COMMON -S "search.flops=$budget" -S "train.seeds=$seeds_list"
done
drain 1
dvc queue status
if [ "$DIRECT" = 1 ]; then
    for budget in $BUDGETS; do
        # shellcheck disable=SC2086
        dvc exp run --name "$NAME-$budget-direct" $COMMON -S "train.variants=[optimized,uniform]" \
            -S transfer.width=1.0 -S transfer.depth=1.0 -S transfer.resolution=null -S transfer.data_fraction=1.0 \
            -S "search.flops=$budget" -S "train.seeds=$seeds_list"
    done
    git checkout -- . && dvc checkout -q  # the committed default again
fi
python scripts/study_table.py --out study
