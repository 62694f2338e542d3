#!/bin/sh
# The study (issues 9, 19): the default problem at three budgets, the optimized and uniform
# networks trained once per seed, the random draws (extrapolate.random_draws) at DRAW_SEEDS, as
# DVC experiments; then study_table.py turns their metrics into study/ (results.csv, table.md,
# seeds.csv, top1_vs_flops.png).
#
#   sh scripts/study.sh                       # the study (study/README.md: its time on a 2-core CPU)
#   BUDGETS=6M SEEDS='0 1' EPOCHS=1 EXTRA='-S data.fraction=0.05' sh scripts/study.sh   # a tiny check
#   DRAW_SEEDS='0 1 2' sh scripts/study.sh    # the draws at every seed too (paired vs_random; 3x the trainings)
#   NAME=stacked EXTRA='-S extrapolate.point=stacked' sh scripts/study.sh   # the other point rule
#
# How it uses the cores: a training stage does not read train.seeds, so DVC's run-cache lets
# experiments share trainings. One shard per (budget, seed) runs JOBS at a time with one thread
# each (two 1-thread trainings do ~1.75x the images/s of one 2-thread training here): at a draw
# seed it trains optimized, uniform and every draw (named <NAME>-<budget>-draws-<seed>), at the
# others optimized and uniform. Last, one experiment per budget with all the seeds (named
# <NAME>-<budget>) finds every training in the run-cache and reports the verdict; study_table.py
# sets the draws' experiment beside it. The draws at one seed are 5 trainings per budget where
# every seed would be 15: their spread over draws is larger than a seed's noise (study/README.md).
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
# images: hours on a 2-core CPU (study/README.md, "How the study runs"), minutes on a GPU.
#
# Run from a clean git checkout of the project (dvc exp needs committed code).
set -eu
if ! dvc status search latency | grep -q "up to date"; then
    echo "study: search and latency are not up to date in dvc.lock: run 'dvc repro search latency' and commit dvc.lock first" >&2
    exit 1
fi
BUDGETS=${BUDGETS:-6M 8M 10M}  # inside what the default search covers (5.2M..26.1M on the committed run)
SEEDS=${SEEDS:-0 1 2}
DRAW_SEEDS=${DRAW_SEEDS:-${SEEDS%% *}}  # seeds the random draws are trained with (each trains all draws)
EPOCHS=${EPOCHS:-2}
JOBS=${JOBS:-2}
EXTRA=${EXTRA:-}
DIRECT=${DIRECT:-0}
NAME=${NAME:-study}  # experiments are named <NAME>-<budget>: another name for a variant of the study
COMMON="-S train.epochs=$EPOCHS $EXTRA"

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
            dvc queue start -j "$1"  # -j is the number of workers in all, not how many more
            sleep 20
        fi
        sleep 30
    done
}

list() { echo "[$(echo "$1" | tr ' ' ',')]"; }
# Shards: one experiment per (budget, seed), one thread each, JOBS at a time; the draw seeds'
# shards (seven trainings each) first, so the short ones fill in at the end.
for budget in $BUDGETS; do
    for seed in $DRAW_SEEDS; do
        # shellcheck disable=SC2086  # COMMON holds several -S options
        dvc exp run --queue --name "$NAME-$budget-draws-$seed" $COMMON -S "search.flops=$budget" -S "train.seeds=[$seed]" \
            -S "train.variants=[optimized,uniform,random]" -S resources.threads=1
    done
done
for budget in $BUDGETS; do
    for seed in $SEEDS; do
        case " $DRAW_SEEDS " in *" $seed "*) continue ;; esac
        # shellcheck disable=SC2086
        dvc exp run --queue $COMMON -S "search.flops=$budget" -S "train.seeds=[$seed]" \
            -S "train.variants=[optimized,uniform]" -S resources.threads=1
    done
done
drain "$JOBS"
# One experiment per budget over every seed (optimized and uniform, paired), from the run-cache;
# with random trained at every seed (DRAW_SEEDS = SEEDS) it carries the draws too.
variants="[optimized,uniform]"
[ "$(list "$DRAW_SEEDS")" = "$(list "$SEEDS")" ] && variants="[optimized,uniform,random]"
for budget in $BUDGETS; do
    # shellcheck disable=SC2086
    dvc exp run --queue --name "$NAME-$budget" $COMMON -S "search.flops=$budget" -S "train.seeds=$(list "$SEEDS")" \
        -S "train.variants=$variants"
done
drain 1
dvc queue status
if [ "$DIRECT" = 1 ]; then
    for budget in $BUDGETS; do
        # shellcheck disable=SC2086
        dvc exp run --name "$NAME-$budget-direct" $COMMON -S "train.variants=[optimized,uniform]" \
            -S transfer.width=1.0 -S transfer.depth=1.0 -S transfer.resolution=null -S transfer.data_fraction=1.0 \
            -S "search.flops=$budget" -S "train.seeds=$(list "$SEEDS")"
    done
    git checkout -- . && dvc checkout -q  # the committed default again
fi
python scripts/study_table.py --out "study/$(date +%F)"
