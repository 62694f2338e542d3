"""The search's evaluator computes each candidate only from where it differs from the committed
configuration; it must score and choose exactly like the naive evaluator (a full forward and
full BN recalibration per candidate), on real images, for both BN modes."""

from __future__ import annotations

import pytest
import torch

from slimnet.datasets.load import fixed_batches, load_split
from slimnet.optimizers.autoslim import CandidateEvaluator, Resume, greedy_slim, resume_point
from slimnet.space.spec import uniform_spec
from slimnet.training.sandwich import build_space, build_supernet
from tests.realdata import needs_fashion_mnist, prepare_fashion_slice, small_resnet_reference

pytestmark = pytest.mark.slow  # subprocesses and real trainings: `pytest -m 'not slow'` leaves it out

MOBILENET = uniform_spec(
    "mobilenet_v2", 0.25, resolution=16, num_classes=10, in_channels=1, cifar=True, depth=(1, 2, 2, 1, 1, 1, 1), divisor=2
)


def test_resume_points_skip_what_a_unit_leaves_unchanged():
    blueprint = MOBILENET.blueprint()
    names = [block.name for block in blueprint.blocks]
    last = len(blueprint.blocks)
    # The expand width of a block: its expand conv and depthwise conv act per channel, so the
    # candidate starts at the block's project conv, fed the committed depthwise output cut.
    assert resume_point(blueprint, "stage1.0.expand") == Resume(names.index("stage1.0"), 2, True)
    # A stage's width out of its first block (no residual there): the next block's input, cut.
    assert resume_point(blueprint, "stage1") == Resume(names.index("stage1.1"), 0, True)
    assert resume_point(blueprint, "stem") == Resume(names.index("stage0.0"), 0, True)
    # The last conv's width only reaches the pooled features: just the head runs.
    assert resume_point(blueprint, "last") == Resume(last, 0, True)
    resnet = small_resnet_reference(14).blueprint()
    mid = next(u for u in resnet.units if u.endswith(".mid"))
    block = resnet.first_block_of()[mid]
    assert resume_point(resnet, mid) == Resume(block, 1, True)  # the block's second conv
    # A residual-coupled ResNet stage with a projection shortcut: the block's output, cut.
    projected = next(i for i, b in enumerate(resnet.blocks) if b.residual == "project")
    assert resume_point(resnet, resnet.blocks[projected].out_unit) == Resume(projected + 1, 0, True)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = prepare_fashion_slice(tmp_path_factory.mktemp("fashion"), fraction=0.05, search_resolution=16)
    train_set, val_set = load_split(root / "search" / "train.pt"), load_split(root / "search" / "val.pt")
    return fixed_batches(train_set, 128, 128, 0), fixed_batches(val_set, 256, 128, 1)


@needs_fashion_mnist
@pytest.mark.parametrize("bn", ["online", "recalibrate"])
def test_fast_evaluator_scores_every_unit_and_walks_the_same_path_as_the_naive_one(fashion, bn):
    calib, evals = fashion
    space = build_space(MOBILENET, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    torch.manual_seed(0)
    network = build_supernet(space).to(memory_format=torch.channels_last)
    fast = CandidateEvaluator(network, space, calib, evals, bn=bn)
    naive = CandidateEvaluator(network, space, calib, evals, bn=bn, cache_bytes=0)

    # A few greedy steps with both, then every unit's candidate from that narrower base.
    paths = [greedy_slim(e, reference=MOBILENET, max_steps=2) for e in (fast, naive)]
    assert [p.channels for p in paths[0]] == [p.channels for p in paths[1]]
    for a, b in zip(*paths):
        assert a.accuracy == b.accuracy
        assert a.loss == pytest.approx(b.loss, rel=1e-5, abs=1e-6)
    base = paths[0][-1].channels
    assert fast.committed == naive.committed == base
    assert all(fast._start(unit) == resume_point(space.blueprint, unit) for unit in space.choices)  # no fallback
    assert len(naive.cache) == 0
    losses = set()
    for unit in space.choices:
        smaller = space.smaller(base, unit)
        if smaller is None:
            continue
        candidate = {**base, unit: smaller}
        a, b = fast.score(candidate, unit), naive.score(candidate, unit)
        assert a.accuracy == pytest.approx(b.accuracy, abs=100 / 128 + 1e-9), unit  # one image may flip on float noise
        assert a.loss == pytest.approx(b.loss, rel=1e-5), unit
        losses.add(round(b.loss, 4))
    assert len(losses) > 5  # the candidates really differ, so equal scores mean something
    # Scoring leaves the committed base in place: its score is unchanged.
    assert fast.commit(base).loss == pytest.approx(naive.commit(base).loss, rel=1e-5)


@needs_fashion_mnist
@pytest.mark.parametrize("bn", ["online", "recalibrate"])
def test_commits_from_a_resume_point_equal_full_commits(fashion, bn):
    """A greedy step's commit is computed from the winner's resume point (the last conv's width:
    only the head; a stage: the next block; the stem; an expand width: its project conv)."""
    calib, evals = fashion
    space = build_space(MOBILENET, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    torch.manual_seed(1)
    network = build_supernet(space).to(memory_format=torch.channels_last)
    fast = CandidateEvaluator(network, space, calib, evals, bn=bn)
    naive = CandidateEvaluator(network, space, calib, evals, bn=bn, cache_bytes=0)
    config = space.maximum
    assert fast.commit(config) == naive.commit(config)
    for unit in ("last", "stage2", "stem", "stage1.0.expand"):
        config = {**config, unit: space.smaller(config, unit)}
        a, b = fast.commit(config), naive.commit(config)
        assert a.accuracy == pytest.approx(b.accuracy, abs=100 / 128 + 1e-9), unit
        assert a.loss == pytest.approx(b.loss, rel=1e-5), unit
    for unit in space.choices:  # every candidate from the incrementally committed base
        if space.smaller(config, unit) is None:
            continue
        candidate = {**config, unit: space.smaller(config, unit)}
        assert fast.score(candidate, unit).loss == pytest.approx(naive.score(candidate, unit).loss, rel=1e-5), unit
