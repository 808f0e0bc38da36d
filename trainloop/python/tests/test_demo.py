"""The demo driver as the Go side runs it: a separate process with RAY_ADDRESS and SRAYBATCH_EVENTS set."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sraybatch_trainloop import read_events, validate

PKG_ROOT = Path(__file__).resolve().parents[1]


def start_demo(cluster, events_path, *args, env=None):
    # As in a driver job: the package is on the driver's PYTHONPATH only.  Ray
    # adds the driver's cwd (not its PYTHONPATH) to the workers' sys.path, so
    # run from elsewhere to prove the workers need not import the package.
    env = dict(os.environ, **(env or {}), RAY_ADDRESS=cluster.address, SRAYBATCH_EVENTS=str(events_path))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PKG_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "sraybatch_trainloop.demo", *args],
        cwd=events_path.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_demo_runs_steps(cluster, nodes, tmp_path):
    node, key = nodes.add(gpus=2)
    events_path = tmp_path / "events.jsonl"
    proc = start_demo(cluster, events_path, "--steps", "8", "--step-seconds", "0.3", "--max-wait-s", "90")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert f"detected new node {node.node_id[:8]} (job {key}, 2 GPUs)" in out
    assert out.count(f"created placement group ") == 2
    assert f"spawned actor 1 on node {node.node_id[:8]} (job {key}, GPU " in out
    assert "step 8: 2 actors, mean 0.3" in out, out  # the 2nd actor joins within a step or two
    records = read_events(events_path)
    assert all(validate(r) == [] for r in records), records
    steps = [r for r in records if r["event"] == "step_done"]
    assert [s["step"] for s in steps] == list(range(1, 9)) and steps[-1]["actors"] == 2
    assert sorted(r["gpu_index"] for r in records if r["event"] == "actor_spawned") == ["0", "1"]


@pytest.mark.parametrize("sig, want_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_demo_stops_cleanly_on_signal(cluster, nodes, tmp_path, sig, want_code):
    # SLURM's scancel (or the time limit) sends SIGTERM, then SIGKILL after KillWait (10 s here).
    nodes.add(gpus=1)
    events_path = tmp_path / "events.jsonl"
    # Steps longer than the pool's poll interval: Ray's ray.wait times out while the signal arrives,
    # which is when an exception raised by a signal handler became a SystemError.
    proc = start_demo(cluster, events_path, "--steps", "0", "--step-seconds", "1", "--gpus-per-actor", "0")
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step 1:") or time.monotonic() > deadline:
            break
    assert lines and lines[-1].startswith("step 1: 1 actors"), "".join(lines)
    time.sleep(0.3)  # step 2 is in flight: the driver's main thread waits in ray.wait
    sent_at = time.time()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    exited_after = time.time() - sent_at
    output = "".join(lines) + out + err
    assert proc.returncode == want_code, output
    assert "Traceback" not in output and "SystemError" not in output, output
    said = [line for line in output.splitlines() if sig.name in line]
    assert len(said) == 1 and said[0].startswith(f"{sig.name}: stopping"), output
    records = read_events(events_path)
    assert all(validate(r) == [] for r in records), records
    stopping = [r for r in records if r["event"] == "driver_stopping"]
    assert [r["reason"] for r in stopping] == [sig.name], records
    assert stopping[0]["ts"] - sent_at < 2, "the pool did not notice the signal promptly"
    assert exited_after < 10, f"exited {exited_after:.1f}s after {sig.name}: past SLURM's KillWait"


def read_until(proc, prefix, lines, timeout=120):
    """Append proc's stdout lines to ``lines`` until one starts with ``prefix``."""
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return line
        assert time.monotonic() < deadline, "".join(lines)
    raise AssertionError(f"no line starting {prefix!r}:\n" + "".join(lines) + proc.stderr.read())


def test_demo_checkpoints_on_warnings_and_stop_then_resumes(cluster, nodes, tmp_path):
    nodes.add(gpus=1)
    cluster_dir = tmp_path / "cluster"
    (cluster_dir / "nodes").mkdir(parents=True)
    limit_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    (cluster_dir / "nodes" / "h1.json").write_text(json.dumps({"phase": "running", "time_limit_at": limit_at}))
    env = {"SRAYBATCH_CLUSTER_DIR": str(cluster_dir), "SRAYBATCH_HEAD_JOB": "h1", "SRAYBATCH_JOB": "d1"}
    events_path = tmp_path / "events.jsonl"
    proc = start_demo(cluster, events_path, "--steps", "0", "--step-seconds", "0.5", "--gpus-per-actor", "0", env=env)
    lines = []
    read_until(proc, "step 1:", lines)
    assert read_until(proc, "time limit in ", lines).rstrip().endswith(": checkpoint now")  # the head's warning
    read_until(proc, "checkpoint: ", lines)
    (cluster_dir / "nodes" / "d1.json").write_text(json.dumps({"phase": "draining"}))
    read_until(proc, "this job (d1) is draining: checkpoint now", lines)
    read_until(proc, "checkpoint: ", lines)
    sent_at = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    output = "".join(lines) + out + err
    assert proc.returncode == 143 and time.time() - sent_at < 10, output
    assert "Traceback" not in output, output
    records = read_events(events_path)
    assert all(validate(r) == [] for r in records), records
    names = [r["event"] for r in records]
    assert names.count("checkpoint_written") == 3, names  # time limit, drain, SIGTERM
    assert names.index("driver_stopping") < len(names) - 1 - names[::-1].index("checkpoint_written")
    checkpoint = cluster_dir / "checkpoints" / "state.pkl"  # the default --checkpoint-dir
    assert {r["path"] for r in records if r["event"] == "checkpoint_written"} == {str(checkpoint)}

    rerun_events = tmp_path / "rerun.jsonl"
    proc = start_demo(cluster, rerun_events, "--steps", "1", "--step-seconds", "0.1", "--gpus-per-actor", "0", env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    synced = [r for r in read_events(rerun_events) if r["event"] == "state_synced"]
    assert [r["source"] for r in synced] == ["checkpoint"], out


def test_demo_resumed_after_a_handover_goes_on_from_the_checkpoint_step(cluster, nodes, tmp_path):
    # A driver job's supervisor stops the driver (SIGTERM) at a head handover
    # and starts it again in the next generation with SRAYBATCH_RESUMED=1.
    nodes.add(gpus=1)
    cluster_dir = tmp_path / "cluster"
    env = {"SRAYBATCH_CLUSTER_DIR": str(cluster_dir), "SRAYBATCH_JOB": "d1", "SRAYBATCH_GENERATION": "1"}
    args = ("--step-seconds", "0.2", "--gpus-per-actor", "0", "--checkpoint-every", "2")
    proc = start_demo(cluster, tmp_path / "first.jsonl", "--steps", "0", *args, env=env)
    lines = []
    read_until(proc, "step 3:", lines)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, "".join(lines) + out + err
    done = [r["step"] for r in read_events(tmp_path / "first.jsonl") if r["event"] == "step_done"]
    saved = json.loads((cluster_dir / "checkpoints" / "step.json").read_text())["step"]
    assert saved == done[-1], (saved, done)  # the stop's checkpoint: nothing done is lost

    env.update(SRAYBATCH_RESUMED="1", SRAYBATCH_GENERATION="2")
    proc = start_demo(cluster, tmp_path / "second.jsonl", "--steps", str(saved + 2), *args, env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert f"resumed (generation 2): from step {saved}" in out, out
    records = read_events(tmp_path / "second.jsonl")
    assert [r["step"] for r in records if r["event"] == "step_done"] == [saved + 1, saved + 2], records
    assert [r["source"] for r in records if r["event"] == "state_synced"] == ["checkpoint"], out


def test_package_classes_ship_by_value(cluster, nodes, tmp_path):
    # demo.Trainer imported (not run as __main__), in a driver whose cwd does not hold the package.
    script = tmp_path / "driver.py"
    script.write_text(
        "import ray\n"
        "from sraybatch_trainloop import ElasticPool\n"
        "from sraybatch_trainloop.demo import Trainer\n"
        "ray.init()\n"
        "pool = ElasticPool(Trainer, actor_kwargs={'step_seconds': 0.05})\n"
        "r = pool.run_step('where', wait_for_actors_s=60)\n"
        "print('RESULTS', len(r), r[0].value['gpu_ids'] if r else None)\n"
        "pool.shutdown()\n"
    )
    nodes.add(gpus=1)
    env = dict(os.environ, RAY_ADDRESS=cluster.address, PYTHONPATH=str(PKG_ROOT))
    env.pop("SRAYBATCH_EVENTS", None)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "RESULTS 1 ['0']" in out.stdout, out.stdout + out.stderr


def test_trainer_backends_in_process(monkeypatch):
    from sraybatch_trainloop.demo import Trainer

    for blocked, backend in [(["torch"], "numpy"), (["torch", "numpy"], "python")]:
        for mod in blocked:
            monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
        t = Trainer(step_seconds=0.05)
        assert t.backend == backend
        out = [t.train_step(k) for k in range(1, 40)]
        assert out[-1]["backend"] == backend and 0.04 < out[-1]["duration_s"] < 1
        assert out[-1]["loss"] < out[0]["loss"]  # it learns
        fresh = Trainer(step_seconds=0.05)
        fresh.set_state(t.get_state())
        assert fresh.get_state() == t.get_state() != Trainer().get_state()
