"""Does the supernet rank networks of equal cost as training them does? The ranking benchmark.

    python benchmarks/ranking.py [--budgets 6M 8M] [--draws 10] [--supernet stages/supernet/supernet.pt ...]
        [--trajectory stages/search/trajectory.json ...] [--shard 0/2] [--threads 1] [--judge-epochs 2]

For each budget (a full-network FLOPs target), the projected problem's equivalent cost is the
target's share of the full uniform network times the projected uniform network's FLOPs (the
ratio rule extrapolate uses). At that cost it gathers configurations of the supernet's space:
the uniform one (every unit the same share of its maximum), ``--draws`` random draws (the
supernet's own sampler), each scaled by one multiplier onto the space's choices to the cost,
and the point each ``--trajectory`` selects by the ratio rule. Each is trained alone on the
projected problem with the supernet's recipe and scored on every held-out search image (cached
under ``--scratch``, keyed by configuration and recipe, so a second supernet reuses them), and
each ``--supernet`` scores it as the search does (``search.bn``, ``search.eval_images``). Per
budget and supernet it prints Kendall's tau of each estimate (accuracy, -loss, -calibrated loss)
against the trained top-1 with a bootstrap 95% interval, and the regret of the supernet's pick:
the best trained top-1 minus that of the configuration the estimate ranks first. With several
``--trajectory`` files it prints the cosine similarity of their selected points' per-unit width
multipliers (two supernet seeds, two held-out samples: how stable the decision is).

``--judge-epochs E`` trains every configuration a second time for E epochs and prints Kendall's
tau between the two judges per budget: whether a short training ranks equal-cost networks as a
longer one does (the study's 2-epoch trainings are such a judge). ``--judge-seed S`` trains the
second judge with another seed (alone: the recipe's epochs), so the tau says how far one training
per configuration agrees with itself: the ceiling on any estimate's tau against it.

``--shard i/n`` trains every n-th configuration from the i-th (run n processes side by side with
one thread each; a last run without --shard reads them all back and reports). Run where `dvc
repro search` has run (data/search, the supernet, the trajectory).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import load_params, parse_size
from slimnet.console.errors import SlimnetError
from slimnet.console.progress import reporter
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.nn.network import Network
from slimnet.optimizers.autoslim import CandidateEvaluator
from slimnet.optimizers.baselines import draw_configuration, scale_onto_choices
from slimnet.optimizers.trajectory import Trajectory
from slimnet.pipeline.common import read_json
from slimnet.pipeline.specs import full_uniform, projected_uniform
from slimnet.space.channels import ChannelSpace
from slimnet.space.flops import cost
from slimnet.stats.ranking import kendall_tau, width_similarity
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints, fingerprint
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import load_supernet_file
from slimnet.training.scratch import train_network

BOOTSTRAP = 2000


def selected_point(trajectory: Trajectory, ratio: float) -> dict[str, int]:
    """The ratio rule: the first point at or below the target's FLOPs ratio."""
    return dict(next((p for p in trajectory.points if p.ratio.flops <= ratio), trajectory.points[-1]).channels)


def bootstrap_tau(x: list[float], y: list[float], rng: random.Random) -> tuple[float, float]:
    taus = []
    for _ in range(BOOTSTRAP):
        picks = [rng.randrange(len(x)) for _ in x]
        tau = kendall_tau([x[i] for i in picks], [y[i] for i in picks])
        if tau is not None:
            taus.append(tau)
    taus.sort()
    return taus[int(0.025 * len(taus))], taus[int(0.975 * len(taus)) - 1]


def train_alone(
    jobs: list[str], recipe: Recipe, *, projected, train_set, val_set, judge, scratch: Path, seed: int
) -> dict[str, float]:
    """Each configuration (JSON of its channels) trained alone with ``recipe``: top-1 on ``judge``,
    cached under ``scratch`` keyed by spec and recipe."""
    alone: dict[str, float] = {}
    for job in jobs:
        channels = json.loads(job)
        spec = projected.with_channels(channels)
        key = fingerprint({"spec": spec.model_dump(mode="json"), "recipe": recipe.recipe_fields(), "train": len(train_set)})
        done = scratch / f"{key}.json"
        if not done.is_file():
            started = time.perf_counter()
            torch.manual_seed(seed)
            checkpoints = Checkpoints(scratch / "checkpoints", key)
            with reporter(silent=True) as report:
                network, _, _ = train_network(
                    Network(spec.blueprint()),
                    train_set,
                    val_set,
                    recipe=recipe,
                    checkpoints=checkpoints,
                    device=torch.device("cpu"),
                    report=report,
                )
            top1 = accuracy(network, judge)[0]
            atomic.write_json(done, {"top1": top1, "flops": spec.cost().flops, "channels": channels})
            checkpoints.clear()
            print(f"trained {key[:10]} ({recipe.epochs} epochs): {top1:.2f}% ({time.perf_counter() - started:.0f} s)", flush=True)
        alone[job] = json.loads(done.read_text())["top1"]
    return alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--budgets", nargs="+", default=["6M", "8M"])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--supernet", type=Path, nargs="+", default=[Path("stages/supernet/supernet.pt")])
    parser.add_argument("--trajectory", type=Path, nargs="*", default=[Path("stages/search/trajectory.json")])
    parser.add_argument(
        "--eval-images", type=int, default=None, help="held-out images per estimate (default: search.eval_images)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the alone trainings' seed")
    parser.add_argument("--shard", default=None, help="i/n: train only every n-th configuration from the i-th, then stop")
    parser.add_argument("--searched-only", action="store_true", help="with --shard: only the trajectories' points")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--scratch", type=Path, default=Path(".checkpoints/ranking"))
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument(
        "--judge-epochs",
        type=int,
        nargs="*",
        default=[],
        help="also train each configuration this long: does a shorter judge rank alike?",
    )
    parser.add_argument("--judge-seed", type=int, default=None, help="the second judge's seed (default: --seed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    params = load_params(args.params)
    device = torch.device("cpu")
    meta, full_meta = read_json(Path("data/search/meta.json"), "project"), read_json(Path("data/meta.json"), "data")
    train_set = load_split(Path("data/search/train.pt"), device)
    val_set = load_split(Path("data/search/val.pt"), device)
    projected = projected_uniform(params.model, params.transfer, params.supernet, meta)
    full = full_uniform(params.model, full_meta)
    space = ChannelSpace.around(
        projected.blueprint(),
        params.supernet.min_width,
        params.supernet.max_width,
        params.supernet.groups,
        params.supernet.divisor,
    )
    resolution = projected.resolution
    trajectories = {path: Trajectory.load(path) for path in args.trajectory}

    # The configurations per budget, the same whichever supernet scores them.
    pools: dict[str, dict[str, dict[str, int]]] = {}
    for budget in args.budgets:
        ratio = parse_size(budget) / full.cost().flops
        target = round(ratio * projected.cost().flops)
        pool = {"uniform": scale_onto_choices(space, space.maximum, target, resolution)}
        for draw in range(args.draws):  # the draws extrapolate scores, at this cost
            pool[f"random{draw}"] = draw_configuration(space, draw, flops=target, resolution=resolution)[0]
        for path, trajectory in trajectories.items():
            pool[f"searched:{path.parent.name or path.stem}"] = selected_point(trajectory, ratio)
        pools[budget] = pool

    # Stability: where each search puts the channels at the budget, pair by pair.
    for budget, pool in pools.items():
        searched = [n for n in pool if n.startswith("searched:")]
        for i, a in enumerate(searched):
            for b in searched[i + 1 :]:
                similarity = width_similarity(pool[a], pool[b], projected.channels)
                print(f"{budget}: width similarity {a} vs {b}: {similarity:.4f}")

    # Trained alone, with the supernet's recipe, on the projected problem; cached per configuration.
    recipe = Recipe(**{**params.supernet.recipe_fields(), "seed": args.seed})
    judge = fixed_batches(val_set, len(val_set), 512, 0)  # every held-out image
    jobs = sorted(
        {
            json.dumps(c, sort_keys=True)
            for pool in pools.values()
            for name, c in pool.items()
            if not args.searched_only or name.startswith("searched:")
        }
    )
    if args.shard:
        index, count = (int(n) for n in args.shard.split("/"))
        jobs = jobs[index::count]
    common = dict(projected=projected, train_set=train_set, val_set=val_set, judge=judge, scratch=args.scratch, seed=args.seed)
    alone = train_alone(jobs, recipe, **common)
    # A second judge: the same configurations trained for another number of epochs.
    judge_seed = args.seed if args.judge_seed is None else args.judge_seed
    if args.judge_seed is not None and not args.judge_epochs:
        args.judge_epochs = [recipe.epochs]  # the same recipe, another seed: how far the judge agrees with itself
    common_judge = {**common, "seed": judge_seed}
    second = {
        e: train_alone(jobs, recipe.model_copy(update={"epochs": e, "seed": judge_seed}), **common_judge)
        for e in args.judge_epochs
    }
    if args.shard:
        return

    eval_images = args.eval_images or params.search.eval_images
    report: dict = {"recipe": recipe.recipe_fields(), "eval_images": eval_images, "budgets": {}, "judges": {}}
    rng = random.Random(0)
    for epochs, other in second.items():
        for budget, pool in pools.items():
            keys = [json.dumps(c, sort_keys=True) for c in pool.values()]
            x, y = [other[k] for k in keys], [alone[k] for k in keys]
            tau = kendall_tau(x, y)
            low, high = bootstrap_tau(x, y, rng)
            print(
                f"{budget}: judges of {epochs} epochs (seed {judge_seed}) and {recipe.epochs} (seed {args.seed}) over "
                f"{len(keys)} configurations: tau {tau:+.3f} "
                f"[{low:+.3f}, {high:+.3f}]; top-1 {statistics.fmean(x):.2f} and {statistics.fmean(y):.2f} on average"
            )
            report["judges"].setdefault(budget, {})[f"{epochs} epochs, seed {judge_seed}"] = {
                "tau": tau,
                "ci95": [low, high],
                "top1": dict(zip(pool, x)),
            }
    for path in args.supernet:
        network, _, supernet_space = load_supernet_file(path, device)
        if supernet_space.choices != space.choices:
            raise SlimnetError(f"{path} is not a supernet of this params file's space")
        calib = fixed_batches(train_set, params.search.calib_images, params.search.batch_size, params.search.seed)
        evals = fixed_batches(val_set, eval_images, params.search.batch_size, params.search.seed + 1)
        evaluator = CandidateEvaluator(network, space, calib, evals, cache_bytes=0, bn=params.search.bn)
        for budget, pool in pools.items():
            names = list(pool)
            trained = [alone[json.dumps(pool[n], sort_keys=True)] for n in names]
            scores = [evaluator.commit(pool[n]) for n in names]
            estimates = {
                "accuracy": [s.accuracy for s in scores],
                "loss": [-s.loss for s in scores],
                "calibrated": [-s.calibrated for s in scores],
            }
            rows = {}
            print(f"\n{path} at {budget} ({len(names)} configurations, trained alone {min(trained):.2f}-{max(trained):.2f}%)")
            for criterion, values in estimates.items():
                tau = kendall_tau(values, trained)
                low, high = bootstrap_tau(values, trained, rng)
                pick = max(range(len(names)), key=lambda i: values[i])
                regret = max(trained) - trained[pick]
                rows[criterion] = {"tau": tau, "ci95": [low, high], "pick": names[pick], "regret": regret}
                print(f"  {criterion:<11} tau {tau:+.3f} [{low:+.3f}, {high:+.3f}]  pick {names[pick]:<28} regret {regret:.2f}")
            configs = {
                n: {
                    "flops": cost(space.blueprint, pool[n], resolution).flops,
                    "alone_top1": t,
                    "supernet_top1": s.accuracy,
                    "loss": s.loss,
                    "calibrated": s.calibrated,
                }
                for n, t, s in zip(names, trained, scores)
            }
            for n, row in sorted(configs.items(), key=lambda kv: -kv[1]["alone_top1"]):
                print(
                    f"    {n:<28} {row['flops'] / 1e6:6.3f}M  alone {row['alone_top1']:6.2f}  supernet {row['supernet_top1']:6.2f}"
                    f"  loss {row['loss']:.4f}  calibrated {row['calibrated']:.4f}"
                )
            report["budgets"].setdefault(budget, {})[str(path)] = {"criteria": rows, "configs": configs}
    if args.json:
        atomic.write_json(args.json, report)
    print(f"\nmedian alone top-1 {statistics.median(alone.values()):.2f}% over {len(alone)} trainings")


if __name__ == "__main__":
    try:
        main()
    except SlimnetError as error:
        raise SystemExit(f"error: {error}") from None
