"""A stage that a setting switches off (another search.method, a diagnostic off, no slimmable
targets) writes its record without importing torch, and a reader of the network file it leaves
says in one line that it holds none."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimnet.config import load_params
from slimnet.console.errors import SlimnetError
from slimnet.pipeline.off import switched_off
from slimnet.pipeline.plan import run_plan
from slimnet.training.no_network import no_network_reason, write_no_network
from slimnet.training.sandwich import read_network_file
from slimnet.training.trained import load_slimmable
from tests.pipeline_project import set_params

REPO = Path(__file__).resolve().parents[1]
# The stage's process reports at exit whether it imported torch.
PROBE = "import atexit, sys; atexit.register(lambda: print('torch' in sys.modules)); from slimnet.cli import main; main()"


def params_file(directory: Path, **sections: dict) -> Path:
    """params.yaml's defaults with ``sections`` updated, in ``directory``."""
    shutil.copy(REPO / "params.yaml", directory / "params.yaml")
    set_params(directory, sections)
    return directory / "params.yaml"


def test_each_switch_turns_off_its_stage_and_no_other(tmp_path):
    def off(stage: str, **sections: dict) -> str | None:
        found = switched_off(stage, load_params(params_file(tmp_path, **sections)))
        return None if found is None else found.reason

    # params.yaml's defaults: AutoSlim, no diagnostics, no slimmable targets.
    assert [off(s) for s in ("supernet", "morphnet", "dmcp")] == [None, "search.method is autoslim", "search.method is autoslim"]
    assert off("supernet", search={"method": "morphnet"}) == "search.method is morphnet"
    assert off("supernet", search={"method": "dmcp"}) is None  # DMCP trains on from the supernet
    assert off("morphnet", search={"method": "morphnet"}) is None and off("dmcp", search={"method": "dmcp"}) is None
    assert off("alone") == "diagnostics.alone is false" and off("alone", diagnostics={"alone": True}) is None
    assert off("stability") == "diagnostics.stability is false"
    assert off("stability", diagnostics={"stability": True}) is None
    assert off("slimmable") == "slimmable.targets is empty" and off("slimmable", slimmable={"targets": ["4M", "6M"]}) is None
    # The stages every setting runs are never off.
    assert all(off(stage) is None for stage in ("project", "search", "extrapolate", "train", "evaluate", "export"))


def test_the_supernet_plan_is_the_same_bytes_for_autoslim_and_dmcp(tmp_path):
    # What lets DVC keep the trained supernet when search.method switches between the two.
    written = {}
    for method in ("autoslim", "dmcp", "morphnet"):
        plan = run_plan(load_params(params_file(tmp_path, search={"method": method})), tmp_path / method / "supernet.json")
        written[method] = (plan, (tmp_path / method / "supernet.json").read_bytes())
    assert written["autoslim"] == written["dmcp"] and written["autoslim"][0] == {"off": None}
    assert written["morphnet"][0] == {"off": "search.method is morphnet"}


@pytest.mark.slow  # a process per stage
def test_switched_off_stages_write_their_records_without_importing_torch(tmp_path):
    params_file(tmp_path, search={"method": "morphnet"})  # the supernet and DMCP's stages are off too
    for stage in ("supernet", "dmcp", "alone", "stability", "slimmable"):
        run = subprocess.run([sys.executable, "-c", PROBE, stage], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().splitlines()[-1] == "False", f"switched-off {stage} imported torch"
    stages = tmp_path / "stages"
    for stage in ("supernet", "dmcp", "alone", "stability"):
        assert json.loads((stages / stage / "metrics.json").read_text()) == {"enabled": False}, stage
    assert json.loads((stages / "slimmable/metrics.json").read_text())["targets"] == []
    assert no_network_reason(stages / "supernet/supernet.pt") == "search.method is morphnet"
    assert no_network_reason(stages / "dmcp/network.pt") == "search.method is morphnet"
    assert (stages / "supernet/live/plots/metrics/not_trained.tsv").is_file()  # the live folder DVC declares
    # Readers say there is no network, in one line naming why.
    with pytest.raises(SlimnetError, match=r"supernet.pt holds no network \(search.method is morphnet\)"):
        read_network_file(stages / "supernet/supernet.pt")
    assert load_slimmable(stages / "slimmable/model.pt") == (None, [])


def test_a_network_file_is_never_taken_for_a_placeholder(tmp_path):
    torch.save({"no_network": "a key inside a real file"}, tmp_path / "network.pt")
    assert no_network_reason(tmp_path / "network.pt") is None
    assert read_network_file(tmp_path / "network.pt") == {"no_network": "a key inside a real file"}
    write_no_network(tmp_path / "none.pt", "search.method is dmcp")
    first = (tmp_path / "none.pt").read_bytes()
    write_no_network(tmp_path / "none.pt", "search.method is dmcp")
    assert (tmp_path / "none.pt").read_bytes() == first  # same reason, same bytes: DVC reruns nothing
