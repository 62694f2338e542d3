"""The supernet's estimate of a configuration: what the search would score it, on the same images
(MorphNet's: its network keeping each unit's highest-scoring channels).

extrapolate asks it for each network it writes, so evaluate can check AutoSlim's assumption that
the supernet ranks networks as training them from scratch does.
"""

from __future__ import annotations

import torch

from slimnet.config import SearchParams
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.optimizers.autoslim import CandidateEvaluator
from slimnet.pipeline.common import DATA, OPTIMIZER_NETWORKS
from slimnet.training.sandwich import load_supernet_file


def supernet_estimates(configs: dict[str, dict[str, int]], search: SearchParams, device: torch.device) -> dict[str, float]:
    """Held-out top-1 (%) of each configuration in the supernet, scored as the search scores
    candidates (its images, batches, seed and BN mode)."""
    network, _, space = load_supernet_file(OPTIMIZER_NETWORKS[search.method], device)
    calib = fixed_batches(load_split(DATA / "search" / "train.pt", device), search.calib_images, search.batch_size, search.seed)
    evals = fixed_batches(load_split(DATA / "search" / "val.pt", device), search.eval_images, search.batch_size, search.seed + 1)
    evaluator = CandidateEvaluator(network, space, calib, evals, cache_bytes=0, bn=search.bn)
    return {name: round(evaluator.commit(config).accuracy, 4) for name, config in configs.items()}
