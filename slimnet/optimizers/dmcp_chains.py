"""DMCP's architecture (Guo et al., CVPR 2020): one Markov chain per searchable unit.

A unit's choices c_0 < c_1 < ... < c_G split its channels into c_0 always kept and G groups
(c_{k-1}, c_k]. Group k is kept only if group k-1 is, with the learned transition probability
sigmoid(a_k); its marginal keep-probability is p_k = prod_{j<=k} sigmoid(a_j), so p falls along
every chain by construction. During an architecture step each channel of group k is scaled by
p_k (:meth:`MarkovChains.masks`), which makes the task loss differentiable in the logits a; the
expected channels c_0 + sum_k p_k (c_k - c_{k-1}) give the expected cost (:func:`expected_cost`:
the counted cost's own formula, space.flops.cost, on the expected widths, so FLOPs, params and
memory are each exact at a decided chain; a latency budget is the table's prediction for the
full network the widths carry to, :class:`CostTerm`). The widths DMCP reads off are the expected
channels, rounded to the nearest choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from slimnet.nn.network import Network
from slimnet.space.channels import Blueprint
from slimnet.space.flops import cost


class MarkovChains(nn.Module):
    """The transition logits of every unit with more than one choice, in one flat parameter
    (zeros: every transition 0.5, as the official code starts; :func:`budget_logit` gives the
    start at the budget)."""

    def __init__(self, choices: dict[str, list[int]]):
        super().__init__()
        self.choices = {unit: list(c) for unit, c in choices.items()}
        self.units = [unit for unit, c in self.choices.items() if len(c) > 1]
        sizes = [len(self.choices[unit]) - 1 for unit in self.units]
        self.logits = nn.Parameter(torch.zeros(sum(sizes)))
        self.slices: dict[str, slice] = {}
        start = 0
        for unit, size in zip(self.units, sizes):
            self.slices[unit] = slice(start, start + size)
            start += size

    def transitions(self) -> dict[str, torch.Tensor]:
        """P(group k kept | group k-1 kept) per unit."""
        return {unit: torch.sigmoid(self.logits[s]) for unit, s in self.slices.items()}

    def marginals(self) -> dict[str, torch.Tensor]:
        """P(group k kept) per unit: non-increasing along the chain."""
        return {unit: torch.cumprod(p, dim=0) for unit, p in self.transitions().items()}

    def expected_channels(self) -> dict[str, torch.Tensor | float]:
        """Every unit's expected width (a fixed unit: its one choice, a number)."""
        marginals = self.marginals()
        expected: dict[str, torch.Tensor | float] = {}
        for unit, options in self.choices.items():
            if unit not in marginals:
                expected[unit] = float(options[0])
                continue
            steps = torch.tensor([b - a for a, b in zip(options, options[1:])], dtype=marginals[unit].dtype)
            expected[unit] = options[0] + (marginals[unit] * steps.to(marginals[unit].device)).sum()
        return expected

    def masks(self) -> dict[str, torch.Tensor]:
        """Per unit, one factor per channel of its largest choice: 1 for the first c_0, p_k for group k."""
        found = {}
        for unit, p in self.marginals().items():
            options = self.choices[unit]
            sizes = torch.tensor([options[0]] + [b - a for a, b in zip(options, options[1:])], device=p.device)
            found[unit] = torch.repeat_interleave(torch.cat([p.new_ones(1), p]), sizes)
        return found

    @torch.no_grad()
    def sample(self, generator: torch.Generator) -> dict[str, int]:
        """A configuration drawn from the chains (the paper's direct sampling): walk each chain,
        keeping the next group with its transition probability."""
        transitions = {unit: p.detach().cpu() for unit, p in self.transitions().items()}
        config = {}
        for unit, options in self.choices.items():
            index = 0
            if unit in transitions:
                draws = torch.rand(len(options) - 1, generator=generator)
                while index < len(options) - 1 and float(draws[index]) < float(transitions[unit][index]):
                    index += 1
            config[unit] = options[index]
        return config

    @torch.no_grad()
    def expected_config(self) -> dict[str, int]:
        """The widths DMCP derives (expected sampling): each unit's choice nearest its expected
        channels (ties: the smaller)."""
        config = {}
        for unit, value in self.expected_channels().items():
            options = self.choices[unit]
            config[unit] = min(options, key=lambda c: (abs(c - float(value)), c))
        return config


def expected_cost(blueprint: Blueprint, expected: dict[str, torch.Tensor | float], resolution: int, metric: str) -> torch.Tensor:
    """``metric`` (flops, params or memory) of the expected widths, differentiable in the logits:
    the counted cost's formula is a sum of products of widths, so it takes tensors as they are."""
    return torch.as_tensor(getattr(cost(blueprint, expected, resolution), metric))


Widths = Mapping[str, "torch.Tensor | float"]


@dataclass(frozen=True)
class CostTerm:
    """One budget as DMCP's cost term: ``of`` maps widths (expected ones, tensors, or a decided
    configuration) to the cost, differentiably; ``target`` is what the budget loss pulls it to."""

    metric: str
    target: float
    of: Callable[[Widths], torch.Tensor]


def counted_cost(blueprint: Blueprint, resolution: int, metric: str) -> Callable[[Widths], torch.Tensor]:
    """The cost model's own ``metric`` (flops, params or memory) of the widths."""
    return lambda widths: expected_cost(blueprint, dict(widths), resolution, metric)


def budget_logit(chains: MarkovChains, terms: list[CostTerm], aim: float = 0.975, bound: float = 8.0) -> float:
    """The one logit, shared by every transition, at which the most binding term's expected cost
    is ``aim`` of its target (the middle of the budget loss's band), by bisection: the expected
    cost rises with every logit. A start there leaves the architecture steps to move the shape
    within the budget instead of first climbing to it, which a short phase may not finish (from
    0.5 transitions the chains sat at 43% of the default's target). Clamped to +-``bound``."""
    original = chains.logits.detach().clone()

    def ratio(logit: float) -> float:
        chains.logits.fill_(logit)
        return max(float(term.of(chains.expected_channels())) / term.target for term in terms)

    low, high = -bound, bound
    with torch.no_grad():
        if ratio(low) >= aim:
            found = low
        elif ratio(high) <= aim:
            found = high
        else:
            for _ in range(40):
                middle = (low + high) / 2
                low, high = (middle, high) if ratio(middle) < aim else (low, middle)
            found = (low + high) / 2
        chains.logits.copy_(original)
    return found


def budget_loss(expected: torch.Tensor, target: float, band: float = 0.95) -> torch.Tensor:
    """DMCP's piecewise-log cost loss (the official ``log_l1``) on the ratio r = expected / target:
    log(1 - r) below ``band`` (pulls the cost up), 0 within [band, 1], log(r - band) above 1
    (pushes it down). The official form on absolute FLOPs differs by constants only."""
    ratio = expected / target
    if float(ratio.detach()) < band:
        return torch.log(1.0 - ratio)
    if float(ratio.detach()) <= 1.0:
        return ratio * 0.0
    return torch.log(ratio - band)


class ChannelScaling:
    """Forward hooks that scale each layer's output channels by the unit's mask while ``masks``
    is set (an architecture step), and do nothing otherwise. Every layer writing a unit is
    scaled (the body convs after their activation, a projection shortcut after its BN), so a
    residual sum carries the unit's factors on both of its terms."""

    def __init__(self, network: Network):
        self.masks: dict[str, torch.Tensor] | None = None
        self.handles = []
        for block, module in zip(network.blueprint.blocks, network.blocks):
            for conv, layer in zip(block.convs, module.body):
                self.handles.append(layer.register_forward_hook(self._hook(conv.out_unit)))
            if module.shortcut is not None:
                self.handles.append(module.shortcut.register_forward_hook(self._hook(block.out_unit)))

    def _hook(self, unit: str):
        def scale(_module, _inputs, output: torch.Tensor) -> torch.Tensor | None:
            if self.masks is None or unit not in self.masks:
                return None
            mask = self.masks[unit]
            return output * mask[: output.shape[1]].view(1, -1, 1, 1).to(output.dtype)

        return scale

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
