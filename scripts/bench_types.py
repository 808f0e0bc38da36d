"""Sections 9 and 10 of scripts/bench: the typed autoscaler, and an elastic
typed cluster against a static one on a committed demand trace.

9. A cluster (benchty) with three worker types on the dev SLURM: gpu
   (gres gpu:a100:1), h100 (gres gpu:h100:1, resource h100) and cpu
   (partition cpu, no GPU); autoscale interval 1 s, upscale_delay 0. A driver
   (trainloop/python/bench_types.py) fills the running nodes, then asks for
   one actor of each type at once, per run. Printed: demand -> submission per
   type (the driver's wall time against the submission records' `submitted`,
   same host clock; goal poll + 0.5 s); sbatch calls per type per decision
   (the decisions of the autoscaler's event log, each submission record one
   sbatch call, checked against a wrapper in SRAYBATCH_SBATCH that the head
   job inherits; goal 1); squeue calls of the head job per autoscaler poll
   (a wrapper in SRAYBATCH_SQUEUE stamps each call with its time and
   whether the head supervisor made it; the polls
   are the distinct `updated` times of the autoscaler's status file, which
   each poll rewrites, read every 50 ms; goal <= 1).

10. The trace scripts/bench_trace.json (committed before any tuning against
   it) replayed by trainloop/python/bench_replay.py on (a) an autoscaled
   typed cluster (benchel: gpu and cpu types, min 0, idle_timeout 10 s) and
   (b) a static one of the same types sized for the trace's peak (benchsta:
   autoscale off, grown to the peak before the replay), one after the
   other. GPU-hours SLURM allocated come from each job's node record (its
   supervisor's `started` to its final record's `updated`, times its GPUs;
   the head's included, the driver's 0): the dev SLURM has no accounting.
   Printed: those GPU-hours and their ratio (goal <= 0.5x), the makespans
   and their ratio (goal <= 1.2x), Ray-allocated (GPU actors' lifetimes)
   over SLURM-allocated GPU-hours for each, and the head's share.
"""
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "trainloop" / "python"))
import bench_replay  # noqa: E402  (pure helpers; Ray is imported only by its driver)

TYPES9 = """  gpu: {gres: "gpu:a100:1", max: 1}
  h100: {gres: "gpu:h100:1", max: 1, resources: {h100: 1}}
  cpu: {partition: cpu, gpus: 0, cpus: 1, max: 1}"""


def cluster_file(b, name, venv, autoscale, workers):
    """A cluster file for up -f: a 1-GPU head with one Ray CPU (the CPU trap's cap)."""
    f = b.tmp / f"{name}.yaml"
    f.write_text(f"name: {name}\nhead: {{gpus: 1, cpus: 1, partition: debug, time: \"30:00\"}}\n"
                 f"object_store_mb: 80\nsetup: {json.dumps(f'source {venv}/bin/activate')}\n"
                 f"autoscale: {autoscale}\nworkers:\n{workers}\n")
    return str(f)


def stamped_wrapper(b, prog):
    """A wrapper for prog that logs each call to PROG.stamped: its time,
    "head" when a head supervisor (`sraybatch node head`) ran it, else
    "other" (the supervisors strip SLURM_* from what they run, so the
    caller is told by its parent's argv), and its argv."""
    w = b.tmp / f"{prog}-stamped"
    log = b.tmp / f"{prog}.stamped"
    w.write_text("#!/bin/sh\nwho=other\n"
                 "tr '\\0' '\\n' < /proc/$PPID/cmdline | sed -n 2,3p | tr '\\n' ' ' | grep -q '^node head ' && who=head\n"
                 f'echo "$(date +%s.%N) $who $*" >> {log}\nexec {shutil.which(prog)} "$@"\n')
    w.chmod(0o755)
    return str(w), log


class PollWatch(threading.Thread):
    """Reads the autoscaler's status file every 50 ms: its distinct `updated`
    times are the polls (each poll rewrites it; a 1 s poll cannot hide
    between two reads)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.polls, self.stop = path, set(), threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.polls.add(bench_replay.go_time(json.loads(self.path.read_text())["updated"]))
            except (OSError, ValueError, KeyError):
                pass  # not written yet, or caught mid-rename
            time.sleep(0.05)


def driver_line(out, tag):
    for line in out.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    sys.exit(f"bench: the driver printed no {tag} line:\n{out[-3000:]}")


def typed_autoscaler(b, sh, venv):
    """Section 9."""
    print("bench: typed autoscaler, 3 types (benchty)", file=sys.stderr)
    sbatch, sbatch_log = stamped_wrapper(b, "sbatch")
    squeue, squeue_log = stamped_wrapper(b, "squeue")
    env = {**os.environ, "SRAYBATCH_SBATCH": sbatch, "SRAYBATCH_SQUEUE": squeue}
    f = cluster_file(b, "benchty", venv, "{enabled: true, interval: 1s, upscale_delay: 0s, idle_timeout: 5s}", TYPES9)
    sh(b.bin, "up", "-f", f, "--wait", "--timeout", "5m", env=env)
    cdir = b.home / "clusters" / "benchty"
    watch = PollWatch(cdir / "autoscaler.json")
    watch.start()
    r = sh(b.bin, "train", "-c", "benchty", "--follow", "--", "python",
           str(ROOT / "trainloop/python/bench_types.py"), "--runs", str(b.args.types_runs), env=env)
    watch.stop.set()
    runs = driver_line(r.stdout + r.stderr, "BENCH")["runs"]
    for t in ("gpu", "h100", "cpu"):
        lat = [x["submitted_s"][t] for x in runs]
        b.timings.append((f"9 demand -> {t} worker submitted", lat, "s"))
        b.ratios.append((f"9 demand -> {t} submitted, median (max)", f"{statistics.median(lat):.2f} s ({max(lat):.2f})", "<= 1.5 s (1 s poll + 0.5 s)"))
    b.ratios += sbatch_per_decision(cdir, sbatch_log, runs)
    b.ratios.append(squeue_per_poll(squeue_log, sorted(watch.polls)))
    b.sray("down", "-c", "benchty", "--forget")


def calls(log, since, until, who=None):
    """The stamped calls in [since, until), of who ("head", "other") if
    given: [(time, who, argv)]."""
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        t, j, argv = line.split(" ", 2)
        if since <= float(t) < until and (who is None or j == who):
            out.append((float(t), j, argv))
    return out


def sbatch_per_decision(cdir, log, runs):
    """Per autoscaler decision that submitted: the sbatch calls it made per
    type, each submission record one call."""
    subs = [json.loads(p.read_text()) for p in (cdir / "submissions").glob("worker-*.json")]
    by_key = {k: s for s in subs for k in job_keys(s)}
    per_type, decisions = [], 0
    for line in (cdir / "events" / "autoscaler.jsonl").read_text().splitlines():
        d = json.loads(line)
        if not d.get("submitted"):
            continue
        decisions += 1
        made = {by_key[k]["job_id"]: by_key[k].get("type", "") for k in d["submitted"] if k in by_key}
        per_type += [list(made.values()).count(t) for t in set(made.values())]
    wrapped = len([c for c in calls(log, runs[0]["t0"], runs[-1]["end"] + 5) if "/worker-" in c[2]])
    return [("9 sbatch calls per type per decision (max)", f"{max(per_type, default=0)}", "1"),
            ("9 decisions that submitted; calls (wrapper)", f"{decisions}; {sum(per_type)} ({wrapped})",
             f"(measured; 3 types x {len(runs)} runs)")]


def job_keys(sub):
    n = sub.get("tasks", 0)
    return [sub["job_id"]] if not n else [f"{sub['job_id']}_{i}" for i in range(n)]


def squeue_per_poll(log, polls):
    """The head job's squeue calls between the first and the last poll seen
    while the driver ran, over the polls that began in that span."""
    if len(polls) < 2:
        return ("9 squeue calls per poll", "no polls seen", "<= 1")
    n = len(calls(log, polls[0], polls[-1], "head"))
    return ("9 squeue calls of the head per poll", f"{n / (len(polls) - 1):.2f} ({n}/{len(polls) - 1})", "<= 1, whatever the number of types")


def elastic_vs_static(b, venv):
    """Section 10: the committed trace on an elastic and on a static cluster."""
    trace = ROOT / "scripts" / "bench_trace.json"
    peak = bench_replay.peak(bench_replay.load_trace(str(trace)))
    # The head's one GPU holds one actor in both; its one Ray CPU (the CPU
    # trap's cap) goes to an actor or a task.
    gpus, cpus = peak["gpu"] - 1, peak["cpu"]
    workers = (f"  gpu: {{gpus: 1, cpus: 1, max: {gpus}, idle_timeout: 10s}}\n"
               f"  cpu: {{partition: cpu, gpus: 0, cpus: 1, max: {cpus}, idle_timeout: 10s}}")
    el = replay_on(b, venv, "benchel", "{enabled: true, interval: 1s, upscale_delay: 0s}", workers, {}, trace)
    st = replay_on(b, venv, "benchsta", "{enabled: false}", workers, {"gpu": gpus, "cpu": cpus}, trace)
    report10(b, el, st, f"{gpus} gpu + {cpus} cpu workers")


def replay_on(b, venv, name, autoscale, workers, grow, trace):
    """Up a cluster, grow it (static), replay the trace, down it; the figures."""
    print(f"bench: trace replay on {name} (~5 min)", file=sys.stderr)
    b.sray("up", "-f", cluster_file(b, name, venv, autoscale, workers), "--wait", "--timeout", "5m")
    for t, n in grow.items():
        b.sray("grow", "-c", name, "--type", t, "-n", str(n), "--wait", "--timeout", "5m")
    r = b.sray("train", "-c", name, "--follow", "--", "python", str(ROOT / "trainloop/python/bench_replay.py"), str(trace))
    got = driver_line(r.stdout + r.stderr, "REPLAY")
    b.sray("down", "-c", name, "--timeout", "3m")
    nodes = [json.loads(p.read_text()) for p in (b.home / "clusters" / name / "nodes").glob("*.json")]
    now = time.time()
    slurm, head = bench_replay.slurm_gpu_seconds(nodes, now)
    recs = got["records"]
    return {"makespan": bench_replay.makespan(got["t0"], recs), "ray": bench_replay.ray_gpu_seconds(recs),
            "slurm": slurm, "head": head, "split": bench_replay.gpu_split(nodes, recs, now),
            "gpu_jobs": sum(1 for n in nodes if n.get("gpus")),
            "open": sum(1 for n in nodes if n.get("phase") not in ("ended", "failed")),
            "late": max(r["start"] - (got["t0"] + r["at"]) for r in recs)}


def report10(b, el, st, sized):
    h = 3600
    for tag, x in (("elastic", el), ("static", st)):
        sp = x["split"]
        b.timings.append((f"10 makespan, {tag}", [x["makespan"]], "s"))
        b.ratios.append((f"10 {tag}: SLURM GPU-h (head's)", f"{x['slurm'] / h:.3f} ({x['head'] / h:.3f})",
                         f"(measured; {x['gpu_jobs']} GPU jobs, {x['open']} records not final)"))
        b.ratios.append((f"10 {tag}: Ray / SLURM GPU-h", f"{x['ray'] / x['slurm']:.2f}", "(measured)"))
        b.ratios.append((f"10 {tag}: GPU workers' GPU-s", f"{sum(sp.values()):.0f}",
                         f"before 1st actor {sp['before']:.0f}, actors {sp['actors']:.0f}, gaps/idle/drain {sp['rest']:.0f}"))
        b.ratios.append((f"10 {tag}: latest start after its offset", f"{x['late']:.1f} s", "(measured)"))
    b.ratios.append(("10 GPU-h elastic / static", f"{el['slurm'] / st['slurm']:.2f}x", f"<= 0.5x (static: {sized})"))
    b.ratios.append(("10 makespan elastic / static", f"{el['makespan'] / st['makespan']:.2f}x", "<= 1.2x"))
