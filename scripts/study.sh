#!/bin/sh
# The study (issue 9): the default problem at three budgets, every network trained once per seed,
# with the uniform and random baselines, queued as DVC experiments and run one at a time.
# The search does not read the target, so DVC's run-cache runs supernet and search once for all
# budgets. Then study_table.py turns the experiments' committed metrics into study/.
#
#   sh scripts/study.sh                       # the study (about 2 h on a quiet 2-core CPU, see README)
#   BUDGETS=6M SEEDS='[0,1]' EPOCHS=1 EXTRA='-S data.fraction=0.05' sh scripts/study.sh   # a tiny check
#
# Run from a clean git checkout of the project (dvc exp needs committed code).
set -eu
BUDGETS=${BUDGETS:-6M,8M,10M}  # inside what the default search covers (5.4M..26.9M on the committed run)
SEEDS=${SEEDS:-[0,1,2]}
EPOCHS=${EPOCHS:-2}
EXTRA=${EXTRA:-}
# shellcheck disable=SC2086  # EXTRA holds several -S options
dvc exp run --queue \
    -S "search.flops=$BUDGETS" \
    -S "train.seeds=$SEEDS" \
    -S "train.variants=[optimized,uniform,random]" \
    -S "train.epochs=$EPOCHS" \
    $EXTRA
dvc queue start -j 1
# Wait for the queue to drain (a failed experiment is listed by `dvc queue status` and left out).
while dvc queue status 2>/dev/null | grep -Eq "Queued|Running"; do sleep 30; done
dvc queue status
python scripts/study_table.py --out study
