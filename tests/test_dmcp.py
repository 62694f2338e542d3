"""DMCP: keep-probabilities fall along every chain, the expected cost of a decided chain is the
counted cost, a chain that keeps no group computes the smallest configuration, training pulls
the expected FLOPs to the target, and a killed training resumes to the same bytes."""

from __future__ import annotations

import io

import pytest
import torch

from slimnet.console.progress import Reporter
from slimnet.datasets.load import load_split
from slimnet.deploy.latency_model import LatencyTable, TableLayer, _grid, layers_of, predict_spec_ms
from slimnet.nn.network import Network
from slimnet.optimizers.dmcp_chains import (
    ChannelScaling,
    CostTerm,
    MarkovChains,
    budget_logit,
    budget_loss,
    counted_cost,
    expected_cost,
)
from slimnet.optimizers.dmcp_training import train_dmcp, unconverged
from slimnet.space.flops import cost
from slimnet.space.spec import ArchSpec, uniform_spec
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import build_space
from tests.realdata import needs_fashion_mnist, prepare_fashion_slice, small_resnet_reference, train_small_supernet


def mobilenet_space():
    spec = uniform_spec("mobilenet_v2", 0.35, resolution=16, num_classes=10, in_channels=1, cifar=True)
    return build_space(spec, min_width=0.15, max_width=1.5, groups=10, divisor=2)


def test_keep_probabilities_fall_along_every_chain_and_give_the_expected_channels():
    space = mobilenet_space()
    chains = MarkovChains(space.choices)
    with torch.no_grad():
        chains.logits.copy_(torch.randn(chains.logits.shape, generator=torch.Generator().manual_seed(0)) * 3)
    marginals = {unit: p.detach() for unit, p in chains.marginals().items()}
    assert set(marginals) == {u for u, c in space.choices.items() if len(c) > 1}
    for unit, p in marginals.items():
        assert bool((p[1:] <= p[:-1]).all()) and bool((p > 0).all() and (p < 1).all()), unit
        options = space.choices[unit]
        by_hand = options[0] + sum(float(p[k]) * (options[k + 1] - options[k]) for k in range(len(options) - 1))
        assert float(chains.expected_channels()[unit].detach()) == pytest.approx(by_hand, rel=1e-5)
        mask = chains.masks()[unit]
        assert len(mask) == options[-1] and bool((mask[: options[0]] == 1).all())
        assert float(mask[options[-1] - 1].detach()) == pytest.approx(float(p[-1].detach()))
    drawn = chains.sample(torch.Generator().manual_seed(1))
    assert space.problems(drawn) is None
    assert space.problems(chains.expected_config()) is None


def test_a_decided_chain_costs_what_its_configuration_counts():
    space = mobilenet_space()
    chains = MarkovChains(space.choices)
    for value, config in ((30.0, space.maximum), (-30.0, space.minimum)):
        with torch.no_grad():
            chains.logits.fill_(value)
        assert chains.expected_config() == config
        counted = cost(space.blueprint, config, 16)
        for metric in ("flops", "params", "memory"):
            expected = float(expected_cost(space.blueprint, chains.expected_channels(), 16, metric))
            assert expected == pytest.approx(getattr(counted, metric), rel=1e-4), metric
    # The budget loss pulls a cost below the band up, leaves the band alone and pushes one above down.
    for ratio, sign in ((0.5, -1), (0.97, 0), (1.3, 1)):
        x = torch.tensor(ratio * 100.0, requires_grad=True)
        budget_loss(x, 100.0).backward()
        assert (float(x.grad) > 0) - (float(x.grad) < 0) == sign, ratio


def test_a_chain_that_keeps_no_group_computes_the_smallest_configuration():
    """Scaled by p = 0 beyond each unit's first choice, the largest configuration is the
    smallest one (eval-mode BN is per channel, and a zero channel adds nothing downstream)."""
    reference = small_resnet_reference(14)
    space = build_space(reference, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    network = Network(space.blueprint, space.maximum, slimmable=True).eval()
    chains = MarkovChains(space.choices)
    x = torch.randn(3, 1, 14, 14, generator=torch.Generator().manual_seed(0))
    scaling = ChannelScaling(network)
    with torch.no_grad():
        full = network(x)
        scaling.masks = chains.masks()  # every transition 0.5: not the full network
        assert not torch.allclose(network(x), full)
        chains.logits.fill_(-float("inf"))
        scaling.masks = chains.masks()
        scaled = network(x)
        scaling.masks = None
        network.set_channels(space.minimum)
        smallest = network(x)
    assert torch.allclose(scaled, smallest, atol=1e-5, rtol=1e-4)


def test_the_budget_start_puts_the_most_binding_cost_in_the_middle_of_the_band():
    space = mobilenet_space()
    chains = MarkovChains(space.choices)
    flops, params = (counted_cost(space.blueprint, 16, m) for m in ("flops", "params"))
    largest = {m: float(of(space.maximum)) for m, of in (("flops", flops), ("params", params))}
    alone = CostTerm("flops", 0.4 * largest["flops"], flops)
    logit = budget_logit(chains, [alone])
    assert float(chains.logits.abs().max()) == 0.0  # the search leaves the chains as they were
    with torch.no_grad():
        chains.logits.fill_(logit)
    assert float(alone.of(chains.expected_channels())) / alone.target == pytest.approx(0.975, abs=1e-6)
    # Two budgets: the start is where the tighter one sits at 97.5% and the other below it.
    looser = CostTerm("params", 0.9 * largest["params"], params)
    with torch.no_grad():
        chains.logits.fill_(budget_logit(chains, [looser, alone]))
    ratios = [float(t.of(chains.expected_channels())) / t.target for t in (alone, looser)]
    assert ratios[0] == pytest.approx(0.975, abs=1e-6) and ratios[1] < 0.975, ratios
    # A budget below the smallest configuration (or above the largest) clamps to the bound.
    below = CostTerm("flops", 0.5 * float(flops(space.minimum)), flops)
    assert budget_logit(chains, [below]) == -8.0
    assert budget_logit(chains, [CostTerm("flops", 2 * largest["flops"], flops)]) == 8.0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_fashion_slice(tmp_path_factory.mktemp("fashion"), fraction=0.02, search_resolution=12)


@pytest.fixture(scope="module")
def supernet(data_dir, tmp_path_factory, single_thread):
    return train_small_supernet(data_dir, tmp_path_factory.mktemp("supernet"), epochs=2)


def run_dmcp(
    data_dir,
    supernet,
    checkpoint_dir,
    target_ratio: float,
    *,
    epochs: int = 3,
    on_epoch=None,
    arch_lr=0.1,
    cost_weight=0.1,
    table: LatencyTable | None = None,
    start: str = "half",
):
    """DMCP on the tiny supernet towards ``target_ratio`` of its largest configuration's FLOPs
    (or, with ``table``, of its predicted latency)."""
    trained, space, calib, evals, _, _ = supernet
    network = Network(space.blueprint, space.maximum, slimmable=True)
    network.load_state_dict(trained.state_dict())
    reference = small_resnet_reference(12)
    if table is None:
        of = counted_cost(space.blueprint, reference.resolution, "flops")
        term = CostTerm("flops", target_ratio * float(of(space.maximum)), of)
    else:
        term = _latency_term(table, reference, reference, space)
        term = CostTerm("latency", target_ratio * float(term.of(space.maximum)), term.of)
    target = term.target
    chains, curves, summary = train_dmcp(
        network,
        space,
        [term],
        load_split(data_dir / "search" / "train.pt"),
        calib,
        evals,
        recipe=Recipe(epochs=epochs, batch_size=64, lr=0.05, warmup_epochs=0.0, seed=0),
        samples=1,
        resolution=reference.resolution,
        cost_weight=cost_weight,
        arch_lr=arch_lr,
        start=start,
        checkpoints=Checkpoints(checkpoint_dir, "dmcp"),
        device=torch.device("cpu"),
        report=Reporter(None),
        on_epoch=on_epoch,
    )
    return network, chains, curves, summary, space, target


@needs_fashion_mnist
@pytest.mark.slow
def test_dmcp_pulls_the_expected_flops_to_the_target(data_dir, supernet, tmp_path):
    network, chains, curves, summary, space, target = run_dmcp(data_dir, supernet, tmp_path, 0.5)
    # Started at every transition 0.5 (a cost far from the target), it ends within a few percent.
    assert 0.92 <= summary["expected"]["flops"] / target <= 1.03, curves
    assert summary["reached"]["flops"] == pytest.approx(summary["expected"]["flops"] / target, abs=1e-4)
    assert unconverged(summary["reached"], summary["arch_steps"]) is None
    assert summary["derived"]["flops"] == cost(space.blueprint, summary["channels"], 12).flops
    assert 0.85 <= summary["derived"]["flops"] / target <= 1.15, summary
    for unit, p in chains.marginals().items():
        assert bool((p[1:] <= p[:-1]).all()), unit


@needs_fashion_mnist
@pytest.mark.slow
def test_a_killed_dmcp_training_resumes_to_the_same_bytes(data_dir, supernet, tmp_path):
    class Killed(Exception):
        pass

    def kill(row: dict) -> None:
        if row["epoch"] == 1:
            raise Killed

    whole = run_dmcp(data_dir, supernet, tmp_path / "whole", 0.5, epochs=2)
    with pytest.raises(Killed):
        run_dmcp(data_dir, supernet, tmp_path / "killed", 0.5, epochs=2, on_epoch=kill)
    assert torch.load(tmp_path / "killed" / "dmcp.pt", weights_only=False)["epoch"] == 1
    resumed = run_dmcp(data_dir, supernet, tmp_path / "killed", 0.5, epochs=2)

    def blob(result) -> bytes:
        network, chains, curves, summary = result[:4]
        buffer = io.BytesIO()
        torch.save({"model": network.state_dict(), "chains": chains.state_dict(), "channels": summary["channels"]}, buffer)
        return buffer.getvalue()

    assert blob(resumed) == blob(whole) and resumed[2] == whole[2]


@needs_fashion_mnist
@pytest.mark.slow
def test_dmcp_pulls_the_predicted_latency_of_the_carried_network_to_a_latency_budget(data_dir, supernet, tmp_path):
    table = synthetic_table(small_resnet_reference(12))
    _, chains, curves, summary, space, target = run_dmcp(data_dir, supernet, tmp_path, 0.6, epochs=2, table=table)
    assert 0.92 <= summary["expected"]["latency"] / target <= 1.03, curves
    decided = small_resnet_reference(12).with_channels(summary["channels"])
    assert summary["derived"]["latency"] == pytest.approx(predict_spec_ms(table, decided), abs=1e-5)


@needs_fashion_mnist
@pytest.mark.slow
def test_chains_that_end_short_of_the_target_are_reported(data_dir, supernet, tmp_path):
    # Too few, too small architecture steps (a small projected problem): the chains stay near their start.
    _, _, curves, summary, _, _ = run_dmcp(data_dir, supernet, tmp_path, 0.5, epochs=1, arch_lr=1e-3)
    warning = unconverged(summary["reached"], summary["arch_steps"])
    assert summary["arch_steps"] == curves[-1]["epoch"] * len(load_split(data_dir / "search" / "train.pt")) // 64
    assert warning is not None and "flops target" in warning and "dmcp.epochs" in warning, summary
    assert f"after {summary['arch_steps']} architecture steps" in warning and "\n" not in warning
    # The same steps from the budget start (dmcp.start: budget) keep the chains in the band.
    _, _, _, started, _, _ = run_dmcp(data_dir, supernet, tmp_path / "budget", 0.5, epochs=1, arch_lr=1e-3, start="budget")
    assert unconverged(started["reached"], started["arch_steps"]) is None, started


def synthetic_table(spec: ArchSpec) -> LatencyTable:
    """A latency table without timing anything: each layer's ms proportional to its MACs on the
    width grid (so it grows with every width), plus a fixed overhead."""
    widths = dict(spec.channels, input=spec.in_channels)
    blueprint = spec.blueprint()
    rows = []
    for layer in layers_of(blueprint, spec.resolution):
        out_unit = layer.out_unit or blueprint.last_unit
        couts = _grid(widths[out_unit])
        if layer.conv is None or layer.depthwise:
            cins, ms = [], [[1e-4 * c for c in couts]]
        else:
            cins = [widths["input"]] if layer.in_unit == "input" else _grid(widths[layer.in_unit])
            ms = [[1e-6 * ci * co * layer.conv.kernel**2 * layer.size**2 for co in couts] for ci in cins]
        rows.append(TableLayer(name=layer.name, in_unit=layer.in_unit, out_unit=out_unit, cin=cins, cout=couts, ms=ms))
    return LatencyTable(
        device="cpu",
        device_name="synthetic",
        threads=1,
        torch=torch.__version__,
        arch=spec.arch,
        depth=tuple(spec.depth),
        resolution=spec.resolution,
        in_channels=spec.in_channels,
        num_classes=spec.num_classes,
        layers=rows,
        overhead_ms=0.5,
        calibration=[],
    )


def _latency_term(table, projected, full, space, stacking="average"):
    from slimnet.config import SearchParams
    from slimnet.pipeline.dmcp import cost_terms

    within = 0.8 * predict_spec_ms(table, full)
    (term,) = cost_terms(SearchParams(flops=None, latency=within), full, projected, space, table=table, stacking=stacking)
    return term


def test_a_latency_budget_is_the_tables_prediction_for_the_full_network_the_widths_carry_to():
    full = uniform_spec("mobilenet_v2", 0.35, resolution=28, num_classes=10, in_channels=1, cifar=True)
    projected = uniform_spec(
        "mobilenet_v2", 0.35 * 0.7, resolution=16, num_classes=10, in_channels=1, cifar=True, depth=(1, 1, 2, 2, 2, 2, 1)
    )
    space = build_space(projected, min_width=0.15, max_width=1.5, groups=10, divisor=2)
    table = synthetic_table(full)
    term = _latency_term(table, projected, full, space)
    assert term.metric == "latency" and term.target == pytest.approx(0.8 * predict_spec_ms(table, full))
    # The projected uniform network carries to the full uniform one: its predicted latency, in ms.
    assert float(term.of(projected.channels)) == pytest.approx(predict_spec_ms(table, full), rel=1e-6)
    # A wider projected unit costs more on the full network, and the logits get that gradient.
    chains = MarkovChains(space.choices)
    term.of(chains.expected_channels()).backward()
    assert bool((chains.logits.grad >= 0).all()) and int((chains.logits.grad > 0).sum()) == len(chains.logits)


def test_a_latency_budget_outside_the_space_or_without_a_table_stops_naming_it():
    from slimnet.config import SearchParams
    from slimnet.console.errors import SlimnetError
    from slimnet.pipeline.dmcp import cost_terms

    full = uniform_spec("mobilenet_v2", 0.35, resolution=28, num_classes=10, in_channels=1, cifar=True)
    space = build_space(full, min_width=0.15, max_width=1.5, groups=10, divisor=2)
    table = synthetic_table(full)
    for search, given, words in (
        (SearchParams(flops=None, latency=1000.0), table, "choose between"),
        (SearchParams(flops=None, latency=0.6), table, "choose between"),
        (SearchParams(flops=None, latency=5.0), None, "dvc repro latency"),
    ):
        with pytest.raises(SlimnetError, match="search.latency") as caught:
            cost_terms(search, full, full, space, table=given)
        assert words in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    "text, key",
    [
        ("dmcp:\n  arch_lr: 0\n", "dmcp.arch_lr"),
        ("dmcp:\n  cost_weight: -1\n", "dmcp.cost_weight"),
        ("dmcp:\n  samples: -1\n", "dmcp.samples"),
        ("dmcp:\n  epochs: 2\n  warmup_epochs: 2\n", "dmcp"),
        ("search:\n  method: dmpc\n", "search.method"),
    ],
)
def test_bad_dmcp_params_stop_before_any_work_in_one_line(tmp_path, text, key):
    from slimnet.config import load_params
    from slimnet.console.errors import SlimnetError

    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(SlimnetError) as caught:
        load_params(tmp_path / "params.yaml")
    assert key in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_a_budget_dmcp_cannot_express_or_reach_stops_naming_it():
    from slimnet.config import SearchParams
    from slimnet.console.errors import SlimnetError
    from slimnet.pipeline.dmcp import cost_terms

    full = uniform_spec("mobilenet_v2", 0.35, resolution=28, num_classes=10, in_channels=1, cifar=True)
    projected = uniform_spec("mobilenet_v2", 0.35 * 0.7, resolution=16, num_classes=10, in_channels=1, cifar=True)
    space = build_space(projected, min_width=0.15, max_width=1.5, groups=10, divisor=2)
    flops, params = cost_terms(SearchParams(flops=6_000_000, params=150_000), full, projected, space)
    assert flops.target / projected.cost().flops == pytest.approx(6e6 / full.cost().flops)
    assert params.target / projected.cost().params == pytest.approx(150e3 / full.cost().params)
    assert float(params.of(space.maximum)) == cost(space.blueprint, space.maximum, 16).params
    with pytest.raises(SlimnetError, match="search.flops") as caught:
        cost_terms(SearchParams(flops=200_000_000), full, projected, space)
    assert "choose between" in str(caught.value) and "\n" not in str(caught.value)
