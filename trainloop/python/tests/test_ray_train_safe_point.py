"""Why sraybatch stops a driver with SIGINT at a head handover, on real Ray Train.

Ray Train v2's controller rewrites ``<storage>/<name>/checkpoint_manager_snapshot.json``
in place after each checkpoint, and a driver run again under the same
``RunConfig(name)`` resumes from it. ``slow_snapshot/sitecustomize.py`` widens
that write to seconds, and each test stops the example's driver while one is in
flight:

- SIGTERM (what SLURM sends): Ray's driver exits at once, its controller is
  killed in the middle of the write, and the re-run fails on the torn file;
- SIGINT (what raynode sends at a handover): Ray Train aborts its controller
  between two steps of its loop, after the write, and the re-run resumes.

The Ray head runs in its own ``ray start --block`` process so that its raylet,
and with it the controller, gets the hook's environment.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ray_train_elastic.py"
HOOK = Path(__file__).resolve().parent / "slow_snapshot"
SLOW_S = 5


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slow_head():
    """A one-node Ray cluster whose snapshot writes take SLOW_S; yields (address, dir)."""
    d = Path(tempfile.mkdtemp(prefix="srb-rt-"))  # short: Ray's socket paths are limited
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(HOOK), SRB_SLOW_SNAPSHOT=str(d / "marker"),
               SRB_SLOW_SNAPSHOT_S=str(SLOW_S), RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    port = _free_port()
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    flags = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
             "--metrics-export-port", "--runtime-env-agent-port", "--ray-client-server-port"]
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", "--disable-usage-stats", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=false", f"--temp-dir={d / 'ray'}", "--object-store-memory=80000000"]
        + [f"{f}={_free_port()}" for f in flags],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in head.stdout:
        if "Ray runtime started" in line:
            break
    else:
        pytest.fail(f"ray start --head exited {head.wait()}")
    try:
        yield f"127.0.0.1:{port}", d
    finally:
        head.terminate()
        head.wait(timeout=60)
        shutil.rmtree(d, ignore_errors=True)


def _driver(address, d, name, *args, resumed=False):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ADDRESS=address, SRAYBATCH_RESUMED="1" if resumed else "0")
    return subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--cpu", "--max-workers", "1", "--epoch-seconds", "0.2", "--storage", str(d / "store"),
         "--name", name, *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _marks(d):
    try:
        return (d / "marker").read_text().split("\n")
    except FileNotFoundError:
        return []


def _stop_inside_a_write(address, d, name, sig):
    """Starts a run, sends sig to its driver 0.5 s into a slowed snapshot write;
    returns its output and the marks of its writes."""
    before = len([m for m in _marks(d) if m])
    proc = _driver(address, d, name, "--epochs", "1000")
    deadline = time.monotonic() + 120
    while not any("start" in m for m in _marks(d)[before:]):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0]
    time.sleep(SLOW_S)  # a write that survives the stop ends by now
    return out, [m for m in _marks(d)[before:] if m]


def _snapshot(d, name):
    return (d / "store" / name / "checkpoint_manager_snapshot.json").read_text()


def test_sigterm_inside_the_snapshot_write_fails_the_rerun(slow_head):
    address, d = slow_head
    _, marks = _stop_inside_a_write(address, d, "term", signal.SIGTERM)
    assert [m.split()[-1] for m in marks] == ["start"], marks
    with pytest.raises(json.JSONDecodeError):
        json.loads(_snapshot(d, "term"))
    rerun = _driver(address, d, "term", "--epochs", "1", resumed=True)
    out = rerun.communicate(timeout=120)[0]
    assert rerun.returncode != 0 and "CheckpointManagerInitializationError" in out, out


def test_sigint_waits_for_the_snapshot_write_and_the_rerun_resumes(slow_head):
    address, d = slow_head
    out, marks = _stop_inside_a_write(address, d, "int", signal.SIGINT)
    assert "Received SIGINT. Gracefully aborting the training run" in out, out
    assert [m.split()[-1] for m in marks] == ["start", "end"], marks
    latest = json.loads(_snapshot(d, "int"))["latest_checkpoint_result"]
    assert latest is not None
    rerun = _driver(address, d, "int", "--epochs", "3", resumed=True)
    out = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0, out
    assert "A run snapshot was found in storage folder" in out, out
    resumed = re.search(r"resumed from epoch (\d+) step (\d+)", out)
    assert resumed and int(resumed.group(1)) > 0, out
