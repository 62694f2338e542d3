"""scripts/study_table.py: experiments' metrics (as `dvc exp show --json` gives them) -> table, CSV."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses and real trainings: `pytest -m 'not slow'` leaves it out

REPO = Path(__file__).resolve().parents[1]


# The supernet's estimates: in the same order as the trained top-1 below except one pair
# (8M random above 4M optimized), so tau over the six networks is (14 - 1) / 15.
ESTIMATES = {
    ("4M", "optimized"): 60.0,
    ("4M", "uniform"): 55.0,
    ("4M", "random"): 50.0,
    ("8M", "optimized"): 70.0,
    ("8M", "uniform"): 69.0,
    ("8M", "random"): 59.0,
}


def study_table(tmp_path: Path, shown: list, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """scripts/study_table.py on ``shown`` (as `dvc exp show --json` gives it), writing tmp_path/out."""
    (tmp_path / "exp.json").write_text(json.dumps(shown))
    command = [
        sys.executable,
        str(REPO / "scripts/study_table.py"),
        "--json",
        str(tmp_path / "exp.json"),
        "--out",
        str(tmp_path / "out"),
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Commit everything in ``repo``; its revision (an experiment's commit, as dvc exp show gives it)."""
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def experiment(name: str, flops: str, top1: dict[str, list[float]]) -> dict:
    from slimnet.stats.verdict import mean_and_std, paired_gain

    metrics = {"seeds": len(top1["optimized"])}
    for variant, values in top1.items():
        mean, std = mean_and_std(values)
        metrics[variant] = {
            "top1": round(mean, 3),
            "top1_std": None if std is None else round(std, 3),
            "flops": int(float(flops[:-1]) * 1e6),
            "params": 1,
            "supernet_top1": ESTIMATES[(flops, variant)],
        }
    gain = paired_gain(top1["optimized"], top1["uniform"])
    metrics.update(gain_top1=gain.gain, gain_ci95_low=gain.ci95_low, gain_ci95_high=gain.ci95_high, verdict=gain.verdict)
    if "random" in top1:
        metrics["vs_random"] = {"verdict": paired_gain(top1["optimized"], top1["random"]).verdict}
    return {
        "rev": name * 5,
        "name": name,
        "data": {
            "params": {"params.yaml": {"data": {"search": {"flops": flops}}}},
            "metrics": {"stages/evaluate/metrics.json": {"data": metrics}},
        },
    }


def test_the_table_and_csv_come_from_each_budgets_experiment_over_most_seeds(tmp_path):
    shown = [
        {"rev": "workspace", "name": None, "data": {"params": {}, "metrics": {}}, "experiments": None},
        {
            "rev": "abc",
            "name": "main",
            "data": {"params": {}, "metrics": {}},
            "experiments": [
                {
                    "revs": [
                        experiment(
                            "small",
                            "4M",
                            {"optimized": [80.0, 81.0, 80.5], "uniform": [79.0, 79.8, 79.6], "random": [78.0, 78.5, 79.0]},
                        )
                    ]
                },
                {
                    "revs": [
                        experiment(
                            "large",
                            "8M",
                            {"optimized": [85.0, 84.0, 86.0], "uniform": [85.5, 84.2, 85.0], "random": [84.0, 83.0, 85.0]},
                        )
                    ]
                },
                # A one-seed shard of the 4M budget (the study runs them to share the cores): left out.
                {"revs": [experiment("shard", "4M", {"optimized": [70.0], "uniform": [60.0], "random": [65.0]})]},
                {"revs": [{"rev": "f" * 40, "name": "failed", "data": {"params": {}, "metrics": {}}}]},
            ],
        },
    ]
    result = study_table(tmp_path, shown)
    assert result.returncode == 0, result.stderr
    assert "left out failed" in result.stderr
    table = (tmp_path / "out/table.md").read_text().splitlines()
    assert table[2].startswith("| 4M | 3 | 80.50 ± 0.50 (4.00M)") and "| better |" in table[2]
    assert table[3].startswith("| 8M | 3 |") and "| within noise |" in table[3]
    assert "over the 6 networks: +0.87" in (tmp_path / "out/table.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "out/results.csv")))
    assert [(r["target"], r["variant"]) for r in rows] == [
        ("4M", "optimized"),
        ("4M", "uniform"),
        ("4M", "random"),
        ("8M", "optimized"),
        ("8M", "uniform"),
        ("8M", "random"),
    ]
    # The error bar is the 95% interval of the mean: t(2) x std / sqrt(3).
    assert float(rows[0]["top1_ci95"]) == round(4.3027 * 0.5 / math.sqrt(3), 3)


def test_a_direct_search_experiment_is_the_direct_baseline_at_its_budget(tmp_path):
    """study.sh DIRECT=1 runs each budget once more with the identity projection: its optimized
    network is the direct search's, compared with the projected search's at the same budget, with
    both searches' measured cost."""
    projected = experiment(
        "study-4M", "4M", {"optimized": [80.0, 81.0, 80.5], "uniform": [79.0, 79.8, 79.6], "random": [78.0, 78.5, 79.0]}
    )
    projected["data"]["params"]["params.yaml"]["data"]["transfer"] = {
        "width": 0.7,
        "depth": 0.5,
        "resolution": 16,
        "data_fraction": 0.2,
    }
    projected["data"]["metrics"]["stages/evaluate/metrics.json"]["data"]["search_cost"] = {
        "supernet_train_flops": 10**12,
        "search_flops": 10**12,
    }
    direct = experiment("study-4M-direct", "4M", {"optimized": [81.0, 82.0, 81.5], "uniform": [79.0, 79.8, 79.6]})
    direct["data"]["params"]["params.yaml"]["data"]["transfer"] = {
        "width": 1.0,
        "depth": 1.0,
        "resolution": None,
        "data_fraction": 1.0,
    }
    direct["data"]["metrics"]["stages/evaluate/metrics.json"]["data"]["search_cost"] = {
        "supernet_train_flops": 30 * 10**12,
        "search_flops": 10 * 10**12,
    }
    # The other point rule (extrapolate.point: stacked) at the same budget: a row of its own.
    stacked = experiment("study-4M-stacked", "4M", {"optimized": [79.0, 80.0, 79.5], "uniform": [79.0, 79.8, 79.6]})
    stacked["data"]["params"]["params.yaml"]["data"].update(
        transfer=projected["data"]["params"]["params.yaml"]["data"]["transfer"], extrapolate={"point": "stacked"}
    )
    shown = [
        {
            "rev": "abc",
            "name": "main",
            "data": {},
            "experiments": [{"revs": [stacked]}, {"revs": [projected]}, {"revs": [direct]}],
        }
    ]
    result = study_table(tmp_path, shown)
    assert result.returncode == 0, result.stderr
    header, _, row, stacked_row = (tmp_path / "out/table.md").read_text().splitlines()[:4]
    assert stacked_row.startswith("| 4M (point: stacked) | 3 | 79.50 ± 0.50 (4.00M) |")
    assert header.endswith("| direct top-1 | optimized - direct [95% CI], search cost |")
    # Both have std 0.5 over 3 seeds: difference -1.00, Welch dof 4, half-width t(4) 2.776 x sqrt(2 x 0.25 / 3).
    half = 2.7764 * math.sqrt(2 * 0.25 / 3)
    assert f"| 81.50 ± 0.50 (4.00M) | -1.00 [{-1 - half:+.2f}, {-1 + half:+.2f}], search 20.0x cheaper |" in row
    rows = list(csv.DictReader(open(tmp_path / "out/results.csv")))
    assert [(r["point"], r["variant"]) for r in rows] == [
        ("ratio", "optimized"),
        ("ratio", "uniform"),
        ("ratio", "random"),
        ("ratio", "direct"),
        ("stacked", "optimized"),
        ("stacked", "uniform"),
    ]
    # The direct network's supernet is another one: its estimate stays out of Kendall's tau.
    assert rows[3]["supernet_top1"] == "" and "over the 4 networks" in (tmp_path / "out/table.md").read_text()


def test_every_networks_top1_comes_from_each_experiments_own_seeds_csv(tmp_path):
    """study/seeds.csv: evaluate's seeds.csv of each experiment the table uses, read from its commit."""
    repo = tmp_path / "repo"
    (repo / "stages/evaluate").mkdir(parents=True)
    (repo / "stages/evaluate/seeds.csv").write_text(
        "variant,seed,top1,test_loss\noptimized,0,80.0,0.5\noptimized,1,81.0,0.4\nuniform,0,79.0,0.6\nuniform,1,79.8,0.5\n"
    )

    git(repo, "init", "-q")
    entry = experiment("study-4M", "4M", {"optimized": [80.0, 81.0], "uniform": [79.0, 79.8]})
    entry["rev"] = commit_all(repo, "exp")
    result = study_table(tmp_path, [{"rev": "abc", "data": {}, "experiments": [{"revs": [entry]}]}], cwd=repo)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "out/seeds.csv")))
    assert [(r["experiment"], r["variant"], r["seed"], r["top1"]) for r in rows] == [
        ("study-4M", "optimized", "0", "80.0"),
        ("study-4M", "optimized", "1", "81.0"),
        ("study-4M", "uniform", "0", "79.0"),
        ("study-4M", "uniform", "1", "79.8"),
    ]


def test_the_other_point_rule_is_compared_with_the_default_seed_by_seed(tmp_path):
    """extrapolate.point: stacked against ratio at one budget: the optimized networks of the two
    experiments paired by seed, from each experiment's own seeds.csv."""
    repo = tmp_path / "repo"
    (repo / "stages/evaluate").mkdir(parents=True)

    git(repo, "init", "-q")
    entries = []
    for name, point, optimized in (("study-4M", "ratio", [80.0, 81.0, 80.5]), ("stacked-4M", "stacked", [79.0, 80.5, 79.0])):
        lines = [f"optimized,{seed},{top1},0.5" for seed, top1 in enumerate(optimized)]
        lines += [f"uniform,{seed},79.0,0.6" for seed in range(3)]
        (repo / "stages/evaluate/seeds.csv").write_text("variant,seed,top1,test_loss\n" + "\n".join(lines) + "\n")
        entry = experiment(name, "4M", {"optimized": optimized, "uniform": [79.0, 79.0, 79.0]})
        entry["data"]["params"]["params.yaml"]["data"]["extrapolate"] = {"point": point}
        entry["rev"] = commit_all(repo, name)
        entries.append({"revs": [entry]})
    result = study_table(tmp_path, [{"rev": "abc", "data": {}, "experiments": entries}], cwd=repo)
    assert result.returncode == 0, result.stderr
    # Differences -1.0, -0.5, -1.5: mean -1.00, std 0.5, half-width t(2) 4.3027 x 0.5 / sqrt(3).
    half = 4.3027 * 0.5 / math.sqrt(3)
    line = f"- 4M: point stacked - ratio = -1.00 [{-1 - half:+.2f}, {-1 + half:+.2f}] over 3 seeds, within noise"
    assert line in (tmp_path / "out/table.md").read_text().splitlines()


def test_draws_trained_at_one_seed_sit_beside_the_budgets_main_experiment(tmp_path):
    """study.sh trains the draws at DRAW_SEEDS only: the table takes optimized and uniform from
    the experiment over every seed, the draws from their own, and compares the optimized mean
    with the draws' mean by a Welch interval."""
    main = experiment("study-4M", "4M", {"optimized": [80.0, 81.0, 80.5], "uniform": [79.0, 79.8, 79.6]})
    draws = experiment("study-4M-draws-0", "4M", {"optimized": [80.0], "uniform": [79.0], "random": [78.0]})
    draws["data"]["metrics"]["stages/evaluate/metrics.json"]["data"]["random"].update(top1=79.0, top1_std=1.0, draws=5)
    shown = [{"rev": "abc", "name": "main", "data": {}, "experiments": [{"revs": [draws]}, {"revs": [main]}]}]
    result = study_table(tmp_path, shown)
    assert result.returncode == 0, result.stderr
    row = (tmp_path / "out/table.md").read_text().splitlines()[2]
    assert row.startswith("| 4M | 3 | 80.50 ± 0.50 (4.00M) | 79.47 ± 0.42 (4.00M) | 79.00 ± 1.00 (5 draws x 1 seed, 4.00M) |")
    # 80.5 - 79.0 = +1.50; se sqrt(0.25/3 + 1/5), Welch dof round(5.76) = 6, t(6) = 2.4469.
    se = math.sqrt(0.25 / 3 + 1 / 5)
    assert row.endswith(f"| +1.50 [{1.5 - 2.4469 * se:+.2f}, {1.5 + 2.4469 * se:+.2f}] better |"), row
    rows = list(csv.DictReader(open(tmp_path / "out/results.csv")))
    assert [(r["experiment"], r["variant"]) for r in rows] == [
        ("study-4M", "optimized"),
        ("study-4M", "uniform"),
        ("study-4M-draws-0", "random"),
    ]


def test_experiments_whose_metrics_are_the_headline_are_read_from_their_report(tmp_path):
    """evaluate's metrics file holds the headline figures (what dvc exp show shows); the table reads
    the whole report from each experiment's commit and gives what the whole metrics gave."""
    full = experiment("study-4M", "4M", {"optimized": [80.0, 81.0, 80.5], "uniform": [79.0, 79.8, 79.6]})
    (tmp_path / "full").mkdir()
    expected = study_table(tmp_path / "full", [{"rev": "abc", "data": {}, "experiments": [{"revs": [full]}]}])
    assert expected.returncode == 0, expected.stderr
    repo = tmp_path / "repo"
    (repo / "stages/evaluate").mkdir(parents=True)
    report = full["data"]["metrics"]["stages/evaluate/metrics.json"]["data"]
    (repo / "stages/evaluate/report.json").write_text(json.dumps(report))
    git(repo, "init", "-q")
    headline = experiment("study-4M", "4M", {"optimized": [80.0, 81.0, 80.5], "uniform": [79.0, 79.8, 79.6]})
    headline["data"]["metrics"]["stages/evaluate/metrics.json"]["data"] = {"flops": 4_000_000, "top1": 80.5, "uniform": 79.47}
    headline["rev"] = commit_all(repo, "exp")
    missing = dict(headline, name="no-report", rev="0" * 40)  # a commit git does not have: left out, named
    result = study_table(
        tmp_path, [{"rev": "abc", "data": {}, "experiments": [{"revs": [headline]}, {"revs": [missing]}]}], cwd=repo
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out/table.md").read_text() == (tmp_path / "full/out/table.md").read_text()
    assert "left out no-report" in result.stderr
