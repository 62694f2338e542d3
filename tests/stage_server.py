"""A preloaded Python that runs the tiny project's stage commands for the tests: a fork server.

Each stage DVC runs in the tests' tiny project is `python -m slimnet <stage>`, and most of such a
process's CPU on a small problem is its start: importing torch and the libraries around it,
about 2 s on this VM, some 90 times a suite. `python tests/stage_server.py SOCKET` imports those
libraries once and listens; the tiny project's stages run tests/stage_client.py, which hands this
server its arguments, working directory, environment and standard streams. For each one the server
forks a process that becomes `python -m slimnet ...` there: slimnet itself is imported fresh from
the project, the command runs at top level and exits as a script does (atexit, stream flushes), and
its exit code goes back to the client. A client that goes away (killed) takes the stage with it.
An uncaught exception ends the stage as it ends a script (traceback, exit code 1).

What a preloaded process cannot show, the tests check with real processes: exit codes and one-line
errors (test_data_stages.py), a stage killed midway (test_search_resume.py, test_ddp.py), and that
switched-off stages import no torch (test_switched_off.py). Each test module starts its own server,
so two runs compared for the same bytes ran under different hash seeds, as two processes would.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import runpy
import select
import signal
import socket
import struct
import sys
import threading
import time

# What the stages import beyond the standard library and slimnet (slimnet comes from the project).
PRELOAD = (
    "numpy",
    "torch",
    "torch.nn.functional",
    "torch.optim",
    "torch._dynamo",  # torch.optim's step imports it on the first call
    "torch.distributed",
    "PIL.Image",
    "yaml",
    "pydantic",
    "typer",
    "rich.console",
    "rich.progress",
    "rich.table",
    "dvclive",
    "dvclive.plots",
    "dvclive.serialize",
    "onnx",
)
HEADER = struct.Struct("!I")
EXIT = struct.Struct("!i")
KILL_GRACE_S = 5.0


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # an optional one (onnx): the stage that needs it imports or reports it itself
    # Out of the collector's sight: a forked process's collections would otherwise walk (and, by
    # touching them, copy) the 360,000 objects preloaded here, 0.2 s each.
    gc.freeze()


def serve(path: str) -> socket.socket:
    """Accept clients until the parent (the test process) goes; return, in a forked runner, one
    client's connection."""
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # runners are reaped by the kernel
    print("ready", flush=True)
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            conn.settimeout(None)
            return conn
        conn.close()
    sys.exit(0)


def receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        chunk = conn.recv(1 << 16)
        if not chunk:
            os._exit(0)  # the client went before it had asked
        data += chunk
    return json.loads(data[HEADER.size :]), fds


def run_for(conn: socket.socket) -> dict:
    """In the runner: fork the stage's process and return its request there; here, wait for it
    (or for the client to go) and send its exit code."""
    request, fds = receive(conn)
    pid = os.fork()
    if pid == 0:
        conn.close()
        os.setpgid(0, 0)  # the stage and what it starts: killed together if the client goes
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        return request
    for fd in fds:
        os.close(fd)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            conn.sendall(EXIT.pack(128 - code if code < 0 else code))
            os._exit(0)
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and not conn.recv(1):
            stop(pid)
            os._exit(0)


def stop(pid: int) -> None:
    """The client went (killed): stop the stage as its process would have been stopped."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, ChildProcessError):
        pass


def become(request: dict) -> None:
    """Turn this process into `python -m slimnet ARGS` started in the client's directory."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.path[0] = os.getcwd()  # as `python -m` puts it: the project's own slimnet copy
    sys.argv = ["-m", *request["argv"]]


def run_stage() -> None:
    """`python -m slimnet`, and its exit as the interpreter makes it (non-daemon threads joined,
    atexit handlers run, streams flushed), less the teardown of the preloaded modules, which a
    process that imported only what the stage needs would not pay (0.4 s)."""
    try:
        runpy.run_module("slimnet", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            code = exit.code or 0
        else:  # sys.exit("message"): printed, exit code 1, as the interpreter does
            print(exit.code, file=sys.stderr)
            code = 1
    getattr(threading, "_shutdown", lambda: None)()  # private; what Py_Finalize calls first
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    preload()
    become(run_for(serve(sys.argv[1])))
    run_stage()
