"""Section 8 of scripts/bench: a head handover by promotion, timed in parts.

A --rollover cluster (benchho<i>: a head and 2 workers, 1 GPU each, on the
dev SLURM) runs the built-in loop (0.3 s steps, a checkpoint every 5); the
head's limit is shortened under --rollover-before (scontrol update, as
TestE2EHandover does), so the head promotes a worker. Per handover it prints:

- the gap: the driver's last step on generation 1 to its first step on
  generation 2, and to its first step at the world size of the nodes that
  stay (the old head's GPU leaves with it), split into its parts, each the
  time from one milestone to the next: the old head's seal (the driver's
  stop and checkpoint, every node leaving), generation 2 published (the
  promoted head's `ray start --head`, then its wait for the seal), the
  driver's own Ray node in generation 2, the driver command's restart
  (ray.init and its pool), the checkpoint load (the first actor's state from
  the checkpoint), its first step, and the other worker rejoining;
- the GPU-seconds idle per worker: from its last step on generation 1 to
  the first step that uses it on generation 2;
- steps lost: the last step on generation 1 less the first on generation 2,
  plus one (goal: <= the checkpoint interval).

Baselines from the same run: generation 1's head's own `ray start --head`
(the supervisor's line before it to its "ray node up"), and a driver started
on the running generation 2 with the checkpoint there (its node's `ray start`
to its first step, the checkpoint loaded on the way). The ratio is the gap to
the first step over their sum; its goal is 1.0x plus the handover's fixed
waits: the notice poll (membershipInterval, <= 2 s), the old head's seal,
the polls of publish and join (<= 0.5 s each), and a joining node's wait for
the new head's membership snapshot (written every 2 s) before it is up. Times of the supervisors'
steps come from their job logs, stamped to the millisecond
(raynode.LogTimeLayout); the driver's from its event log.
"""
import calendar
import datetime
import json
import re
import statistics
import sys
import time
from pathlib import Path

EVERY, STEP_S = 5, 0.3
LINE = re.compile(r"^sraybatch node \w+ \[(\d\d:\d\d:\d\d\.\d{3})\]: (.*)$")


def run(b, sh, venv):
    """Section 8 on Bench b (sh: bench's command runner; venv: the Ray venv): N handovers."""
    rows, ratios = [], []
    for i in range(1, b.args.handover_runs + 1):
        print(f"bench: handover by promotion (benchho{i}, {i}/{b.args.handover_runs})", file=sys.stderr)
        r = one_handover(b, sh, venv, f"benchho{i}")
        rows.append(r)
        print("bench:   " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), file=sys.stderr)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    b.timings += [(f"8 {k}", [r[k] for r in rows], "s") for k in rows[0] if not k.startswith("steps")]
    base = med["baseline: ray start --head"] + med["baseline: driver start + checkpoint load"]
    ratios.append(("8 gap to first step / (ray start --head + driver start)", f"{med['gap to the first step'] / base:.2f}x",
                   "<= 1.0x + fixed waits (notice poll <= 2 s, the old head's seal, publish/join polls <= 0.5 s, membership snapshot <= 2 s)"))
    ratios.append(("8 (gap less the old head's seal) / the same", f"{(med['gap to the first step'] - med['1 old head sealed']) / base:.2f}x",
                   "<= 1.0x + polls"))
    ratios.append(("8 steps lost per handover (max)", f"{max(r['steps lost'] for r in rows):g}", f"<= {EVERY} (the checkpoint interval)"))
    ratios.append(("8 GPU-seconds idle per worker per handover", f"{med['idle GPU-s, promoted worker']:.1f} / {med['idle GPU-s, following worker']:.1f}",
                   "(measured: promoted / following)"))
    b.ratios += ratios


def one_handover(b, sh, venv, name):
    common = ["--gpus-per-node", "1", "--time", "30:00", "--object-store-mb", "80", "--partition", "debug",
              "--setup", f"source {venv}/bin/activate"]
    b.sray("up", "--name", name, *common, "--workers", "2", "--rollover", "--rollover-before", "5m", "--wait", "--timeout", "5m")
    cdir = b.home / "clusters" / name
    g1 = json.loads((cdir / "generations" / "1.json").read_text())
    driver = b.sray("train", "-c", name, "--step-seconds", str(STEP_S), "--checkpoint-every", str(EVERY)).stdout.strip()
    events = cdir / "events" / f"{driver}.jsonl"
    wait(lambda: last_step(events) >= 10, 120, "the driver's 10th step")
    sh("scontrol", "update", f"JobId={g1['job']}", "TimeLimit-=25")  # under --rollover-before 5m at once
    gen2 = cdir / "generations" / "2.json"
    wait(gen2.exists, 180, "generation 2")
    g2 = json.loads(gen2.read_text())
    h = json.loads((cdir / "handovers" / "1.json").read_text())
    workers = [j for j in worker_jobs(cdir) if j != g2["job"]]
    follower = workers[0] if workers else None
    wait(lambda: full_again(events, g2), 180, "the driver at the world size of the nodes that stay")
    time.sleep(2 * STEP_S)
    sh("scancel", driver)
    wait(lambda: json.loads((cdir / "nodes" / f"{driver}.json").read_text()).get("phase") in ("ended", "failed"), 60, "the driver's end")

    ref = parse_go_time(h["started"])
    logs = {job: log_lines(cdir, role, job, ref) for role, job in
            [("head", g1["job"]), ("worker", g2["job"]), ("driver", driver)] + ([("worker", follower)] if follower else [])}
    evs = [json.loads(l) for l in events.read_text().splitlines() if l.strip()]
    r = gap_parts(evs, logs, h, g2, driver, follower)
    r["baseline: ray start --head"] = ray_start(logs[g1["job"]], head=True, after=0)
    r["baseline: driver start + checkpoint load"] = baseline_driver(b, cdir, name, ref)
    b.sray("down", "-c", name, "--forget")
    return r


def gap_parts(evs, logs, h, g2, driver, follower):
    """The gap's milestones -> {part: seconds}, idle GPU-seconds, steps lost."""
    published, started = parse_go_time(g2["published"]), parse_go_time(h["started"])
    steps = [e for e in evs if e["event"] == "step_done"]
    # Every step before the publication is generation 1's: the driver goes
    # on until it sees the handover's notice, after the handover started.
    before = [e for e in steps if e["ts"] < published]
    after = [e for e in steps if e["ts"] > published]
    last, first = before[-1], after[0]
    size = max(e["actors"] for e in after)
    full = next(e for e in after if e["actors"] >= size)
    drv = logs[driver]
    cmd = first_after(drv, "driver: ", published)
    joined = next(e["ts"] for e in evs if e["event"] == "node_joined" and e["ts"] > cmd)
    synced = next((e["ts"] for e in evs if e["event"] == "state_synced" and e["ts"] > cmd), joined)
    milestones = [("1 old head sealed", parse_go_time(h["sealed"])), ("2 generation 2 published", published),
                  ("3 driver's node in generation 2", cmd), ("4 driver restarted (ray.init, pool)", joined),
                  ("5 checkpoint loaded", synced), ("6 first step", first["ts"]), ("7 workers rejoined (full size)", full["ts"])]
    r, t = {}, last["ts"]
    for k, at in milestones:
        r[k], t = at - t, at
    r["gap to the first step"] = first["ts"] - last["ts"]
    r["gap to the full world size"] = full["ts"] - last["ts"]
    r["promoted head's ray start --head"] = ray_start(logs[g2["job"]], head=True, after=started)
    if follower:
        r["following worker's ray start"] = ray_start(logs[follower], head=False, after=started)
    r["steps lost"] = last["step"] - first["step"] + 1
    for label, job in (("promoted", g2["job"]), ("following", follower)):
        if job:
            spawned = next((e["ts"] for e in evs if e["event"] == "actor_spawned" and e.get("job") == job and e["ts"] > published), None)
            used = next((e["ts"] for e in after if spawned and e["ts"] > spawned), full["ts"])
            r[f"idle GPU-s, {label} worker"] = used - last["ts"]
    return r


def baseline_driver(b, cdir, name, ref):
    """A driver started on the running generation 2 with its checkpoint:
    its node's `ray start` to its first step."""
    job = b.sray("train", "-c", name, "--steps", "3", "--step-seconds", str(STEP_S)).stdout.strip()
    events = cdir / "events" / f"{job}.jsonl"
    wait(lambda: last_step(events) >= 1, 120, "the baseline driver's first step")
    lines = log_lines(cdir, "driver", job, ref)
    start = next(t for t, msg in lines if " start --block" in msg)
    first = next(json.loads(l)["ts"] for l in events.read_text().splitlines() if '"step_done"' in l)
    return first - start


def ray_start(lines, head, after):
    """Seconds from a supervisor's `ray start` line (with --head or not)
    after `after` to its next "ray node up"."""
    t0 = next(t for t, msg in lines if t >= after and " start --block" in msg and ("--head" in msg) == head)
    return next(t for t, msg in lines if t >= t0 and msg.startswith("ray node up at")) - t0


def log_lines(cdir, role, job, ref):
    """[(epoch, message)] of a job log's supervisor lines; the day is the
    one that puts each time nearest ref (the logs say the time only)."""
    path = next((cdir / "logs").glob(f"sray-*-{role}-{job}.out"))
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if m:
            out.append((nearest(m[1], ref), m[2]))
    return out


def nearest(hms, ref):
    day = datetime.datetime.fromtimestamp(ref).date()
    cands = [datetime.datetime.combine(day + datetime.timedelta(days=d), datetime.time.fromisoformat(hms)).timestamp() for d in (-1, 0, 1)]
    return min(cands, key=lambda t: abs(t - ref))


def first_after(lines, prefix, after):
    return next(t for t, msg in lines if t > after and msg.startswith(prefix))


def worker_jobs(cdir):
    out = []
    for f in sorted((cdir / "submissions").glob("*.json")):
        s = json.loads(f.read_text())
        if s.get("role") == "worker":
            out += [f"{s['job_id']}_{k}" for k in range(s["tasks"])] if s.get("tasks") else [s["job_id"]]
    return out


def full_again(events, g2):
    """The driver did 5 steps on generation 2 at the world size of the nodes
    that stay (generation 1's size less the old head's one GPU)."""
    if not events.exists():
        return False
    pub = parse_go_time(g2["published"])
    steps = [json.loads(l) for l in events.read_text().splitlines() if '"step_done"' in l]
    before = [e["actors"] for e in steps if e["ts"] < pub]
    return bool(before) and sum(e["actors"] >= before[-1] - 1 for e in steps if e["ts"] > pub) >= 5


def last_step(events):
    if not events.exists():
        return 0
    return max((json.loads(l)["step"] for l in events.read_text().splitlines() if '"step_done"' in l), default=0)


def wait(cond, secs, what):
    deadline = time.monotonic() + secs
    while not cond():
        if time.monotonic() > deadline:
            sys.exit(f"bench: no {what} within {secs} s")
        time.sleep(0.5)


def parse_go_time(s):
    """Go's RFC 3339 UTC time (up to 9 fractional digits) -> epoch seconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", s)
    if not m:
        sys.exit(f"bench: unexpected timestamp {s!r}")
    return calendar.timegm(time.strptime(m[1], "%Y-%m-%dT%H:%M:%S")) + float("0." + (m[2] or "0"))
