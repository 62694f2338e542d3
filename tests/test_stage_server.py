"""The tests' stage server (tests/stage_server.py) runs a command as `python -m slimnet` would:
the same output, exit code and exit handlers, the package from the working directory, the
client's environment; a killed client takes its stage with it. Checked on a stand-in `slimnet`
package in a temporary directory, beside the real process the client falls back to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline_project import REPO, SERVER_VARIABLE, stage_server

pytestmark = pytest.mark.slow  # infrastructure of the pipeline tests, which are slow too

CLIENT = [sys.executable, str(REPO / "tests" / "stage_client.py")]

STAND_IN = """
import atexit, json, os, sys, time
args = sys.argv[1:]
if args[0] == "report":
    atexit.register(lambda: print("exit handler ran"))
    print(json.dumps({"argv": args, "cwd": os.getcwd(), "probe": os.environ.get("PROBE"),
                      "torch": "torch" in sys.modules, "name": __name__, "file": __file__}))
    print("a line on stderr", file=sys.stderr)
    sys.exit(int(args[1]))
if args[0] == "sleep":
    with open("pid.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename("pid.tmp", "pid")
    time.sleep(120)
if args[0] == "fail":
    raise RuntimeError("a stage that fails")
"""


@pytest.fixture(scope="module")
def server():
    with stage_server():
        yield os.environ[SERVER_VARIABLE]


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    (tmp_path / "slimnet").mkdir()
    (tmp_path / "slimnet" / "__init__.py").write_text("")
    (tmp_path / "slimnet" / "__main__.py").write_text(STAND_IN)
    return tmp_path


def run(cwd: Path, *args: str, server: str | None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != SERVER_VARIABLE}
    env["PROBE"] = "from the client"
    if server:
        env[SERVER_VARIABLE] = server
    return subprocess.run([*CLIENT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_a_command_runs_as_python_m_slimnet_would(server, stand_in):
    served, alone = run(stand_in, "report", "3", server=server), run(stand_in, "report", "3", server=None)
    for result in (served, alone):
        assert result.returncode == 3 and result.stderr == "a line on stderr\n", result.stderr
        report, handler = result.stdout.splitlines()
        assert handler == "exit handler ran"
        report = json.loads(report)
        assert report["argv"] == ["report", "3"] and report["cwd"] == str(stand_in) and report["probe"] == "from the client"
        assert report["name"] == "__main__" and report["file"] == str(stand_in / "slimnet" / "__main__.py")
    # The point of the server: torch is there before the command starts.
    assert json.loads(served.stdout.splitlines()[0])["torch"] and not json.loads(alone.stdout.splitlines()[0])["torch"]


def test_an_uncaught_exception_ends_the_stage_as_it_ends_a_script(server, stand_in):
    result = run(stand_in, "fail", server=server)
    assert result.returncode == 1 and result.stderr.strip().endswith("RuntimeError: a stage that fails"), result.stderr


def test_a_killed_client_takes_its_stage_with_it(server, stand_in):
    env = dict(os.environ, **{SERVER_VARIABLE: server})
    client = subprocess.Popen([*CLIENT, "sleep"], cwd=stand_in, env=env)
    deadline = time.monotonic() + 30
    while not (stand_in / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stage = int((stand_in / "pid").read_text())
    assert stage != client.pid
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{stage}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{stage}").exists(), "the stage outlived its client"
