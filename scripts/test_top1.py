"""Test top-1 of the optimized networks a workspace's train stages wrote, as evaluate computes it.

    python scripts/test_top1.py SEED [SEED ...]     # in the workspace, after `dvc repro train@optimized-<SEED>`

For a study that adds one variant's seeds beside trainings it already has: evaluate itself needs
every variant of train.variants trained (uniform included) for the verdicts.
"""

import sys
from pathlib import Path

import torch

from slimnet.datasets.load import load_split
from slimnet.pipeline.evaluate import _network
from slimnet.pipeline.networks import trained_states
from slimnet.stats.scoring import accuracy

test = load_split(Path("data/full/test.pt"), torch.device("cpu"))
for seed in sys.argv[1:]:
    for name, (spec, state) in trained_states(Path(f"stages/train/optimized/{seed}/model.pt"), "optimized").items():
        top1, loss = accuracy(_network(spec, state, torch.device("cpu")), test.batches(1000, shuffle=False, augment=False))
        print(f"seed {seed} {name}: top-1 {top1:.2f}, test loss {loss:.5f}, {spec.cost().flops} FLOPs, note {spec.note}")
