"""dmcp stage (search.method: dmcp): the sandwich-trained supernet trained on with DMCP's Markov
chains towards the budgets, saved in the supernet file format with the widths DMCP derived.

DMCP searches for one target, so this stage reads the budgets, and a budget change reruns it.
FLOPs, params and memory are mapped onto the projected network at the cost ratio extrapolate
uses (target over the full uniform network's cost, times the projected uniform network's); a
latency budget stays in milliseconds, against the latency table's prediction for the full
network the projected widths carry to (the table is measured on the full network only). With
another method the CLI writes a record saying so instead (pipeline/off.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import DMCPParams, ExtrapolateParams, ModelParams, Params, SearchParams, SupernetParams
from slimnet.console.errors import SlimnetError
from slimnet.console.output import print_summary
from slimnet.console.progress import reporter
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.deploy.latency_model import LatencyTable, predict_ms
from slimnet.optimizers.budgets import carried_widths, requested, show
from slimnet.optimizers.dmcp_chains import CostTerm, counted_cost
from slimnet.optimizers.dmcp_training import train_dmcp, unconverged
from slimnet.parallel.world import SINGLE, World
from slimnet.pipeline.common import (
    CHECKPOINTS,
    DATA,
    OPTIMIZER_NETWORKS,
    STAGES,
    read_json,
    write_timings,
)
from slimnet.pipeline.ranks import stage_processes
from slimnet.pipeline.specs import check_network, dataset_resolution, full_uniform
from slimnet.space.channels import ChannelSpace
from slimnet.space.spec import ArchSpec
from slimnet.training.checkpoint import Checkpoints, file_sha256, fingerprint
from slimnet.training.live import LiveCurves
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import load_supernet_file, save_supernet_file

SUPERNET = OPTIMIZER_NETWORKS["autoslim"]


def cost_terms(
    search: SearchParams,
    full: ArchSpec,
    projected: ArchSpec,
    space: ChannelSpace,
    *,
    table: LatencyTable | None = None,
    stacking: str = "average",
) -> list[CostTerm]:
    """Every budget as DMCP's cost term (module docstring); one line naming the budget where it
    cannot be reached from the channel space."""
    full_cost, projected_cost = full.cost(), projected.cost()
    terms = []
    for budget in requested(search):
        if budget.metric == "latency":
            if table is None:
                raise SlimnetError("search.latency needs the latency table: run `dvc repro latency`")
            term = CostTerm("latency", budget.target, _carried_latency(table, projected, full, stacking))
            scale = 1.0
        else:
            scale = getattr(full_cost, budget.metric) / getattr(projected_cost, budget.metric)
            of = counted_cost(space.blueprint, projected.resolution, budget.metric)
            term = CostTerm(budget.metric, budget.target / scale, of)
        low, high = float(term.of(space.minimum)), float(term.of(space.maximum))
        if not low < term.target < high:
            raise SlimnetError(
                f"search.{budget.metric}: {show(budget.metric, budget.target)} is outside what DMCP's channel space "
                f"reaches on this network: choose between {show(budget.metric, low * scale, 'up')} and "
                f"{show(budget.metric, high * scale, 'down')}"
            )
        terms.append(term)
    return terms


def _carried_latency(table: LatencyTable, projected: ArchSpec, full: ArchSpec, stacking: str):
    blueprint = full.blueprint()
    return lambda widths: torch.as_tensor(
        predict_ms(table, blueprint, carried_widths(widths, projected, full, stacking), full.resolution)
    )


def run_dmcp(
    model: ModelParams,
    supernet: SupernetParams,
    dmcp: DMCPParams,
    search: SearchParams,
    extrapolate: ExtrapolateParams,
    *,
    device: torch.device,
    out_dir: Path = STAGES / "dmcp",
    world: World = SINGLE,
) -> dict:
    network, reference, space = load_supernet_file(SUPERNET, device)
    full = full_uniform(model, read_json(DATA / "meta.json", "data"))
    table = LatencyTable.load(STAGES / "latency" / "table.json") if search.latency is not None else None
    terms = cost_terms(search, full, reference, space, table=table, stacking=extrapolate.stacking)
    train_set = load_split(DATA / "search" / "train.pt", device)
    val_set = load_split(DATA / "search" / "val.pt", device)
    calib = fixed_batches(train_set, supernet.eval_images, 512, dmcp.seed)
    evals = world.share_batches(fixed_batches(val_set, supernet.eval_images, 512, dmcp.seed))
    recipe = Recipe(**dmcp.recipe_fields())
    key = fingerprint(
        {
            "supernet": file_sha256(SUPERNET),
            "choices": space.choices,
            "recipe": recipe.recipe_fields(),
            "search": [dmcp.samples, dmcp.arch_lr, dmcp.cost_weight, dmcp.start, {t.metric: t.target for t in terms}],
            "train": len(train_set),
        }
    )
    checkpoints = Checkpoints(CHECKPOINTS / "dmcp", key)
    live = LiveCurves(out_dir / "live") if world.is_main else None
    with reporter(silent=not world.is_main, curves=live) as report:
        chains, _, summary = train_dmcp(
            network,
            space,
            terms,
            train_set,
            calib,
            evals,
            recipe=recipe,
            samples=dmcp.samples,
            resolution=reference.resolution,
            cost_weight=dmcp.cost_weight,
            arch_lr=dmcp.arch_lr,
            start=dmcp.start,
            checkpoints=checkpoints,
            device=device,
            report=report,
            world=world,
        )
    supernet_flops = read_json(SUPERNET.parent / "metrics.json", "supernet")["train_flops"]
    timings = {"train_seconds": summary.pop("train_seconds")}
    channels = summary.pop("channels")
    dmcp_flops = summary.pop("train_flops")
    warning = unconverged(summary["reached"], summary["arch_steps"])
    if warning and world.is_main:
        print(warning, file=sys.stderr)
    metrics = {
        "enabled": True,
        # The budgets this search ran for (DMCP's search depends on them; the other optimizers' do not).
        "searched_for": {b.metric: show(b.metric, b.target) for b in requested(search)},
        **summary,
        "dmcp_train_flops": dmcp_flops,
        "supernet_train_flops": supernet_flops,
        # What evaluate's search_cost reads: the plain sandwich training and DMCP's phase together.
        "train_flops": supernet_flops + dmcp_flops,
        "units": len(space.choices),
        "train_images": len(train_set),
    }
    if world.is_main:
        marginals = {unit: [round(float(p), 6) for p in values.detach()] for unit, values in chains.marginals().items()}
        save_supernet_file(
            out_dir / "network.pt", network, reference, space, method="dmcp", channels=channels, marginals=marginals
        )
        atomic.write_json(out_dir / "metrics.json", metrics)
        write_timings(out_dir, timings)
        checkpoints.clear()
    return {**metrics, **timings}


def command(p: Params, device: str, relaunch: list[str]) -> None:
    """`python -m slimnet dmcp`: on this process or on torchrun's ranks; the main rank prints the summary."""
    check_network(p, dataset_resolution())
    with stage_processes(p.resources, relaunch, device, **{"dmcp.batch_size": p.dmcp.batch_size}) as rank:
        if rank is not None:
            world, on = rank
            summary = run_dmcp(p.model, p.supernet, p.dmcp, p.search, p.extrapolate, device=on, world=world)
            if world.is_main:
                print_summary("dmcp", summary)
