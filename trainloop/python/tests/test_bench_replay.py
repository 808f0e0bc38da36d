"""The pure helpers of bench_replay (scripts/bench section 10): the trace's
peak, the Ray-allocated and the SLURM-allocated GPU-seconds, the makespan."""

import json

import pytest

import bench_replay as b


def test_peak_counts_overlap_and_not_back_to_back():
    entries = [
        {"at": 0, "kind": "cpu", "count": 4, "seconds": 25},
        {"at": 20, "kind": "cpu", "count": 2, "seconds": 10},  # overlaps the first: 6
        {"at": 25, "kind": "gpu", "count": 2, "seconds": 5},
        {"at": 30, "kind": "gpu", "count": 3, "seconds": 5},  # starts as the last ends: 3
    ]
    assert b.peak(entries) == {"cpu": 6, "gpu": 3}


def test_the_committed_trace_loads_with_its_stated_peak():
    import pathlib

    trace = pathlib.Path(__file__).resolve().parents[3] / "scripts" / "bench_trace.json"
    assert b.peak(b.load_trace(str(trace))) == {"cpu": 4, "gpu": 4}


@pytest.mark.parametrize("bad", [{"at": 0, "kind": "tpu", "count": 1, "seconds": 1},
                                 {"at": 0, "kind": "cpu", "count": 0, "seconds": 1},
                                 {"at": -1, "kind": "cpu", "count": 1, "seconds": 1},
                                 {"at": 0, "kind": "gpu", "count": 1}])
def test_load_trace_refuses_a_malformed_entry(tmp_path, bad):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"entries": [bad]}))
    with pytest.raises(SystemExit, match="entry 0"):
        b.load_trace(str(p))


def test_ray_gpu_seconds_and_makespan():
    records = [{"kind": "gpu", "placed": 10.0, "start": 12.0, "end": 40.0},
               {"kind": "gpu", "placed": 15.0, "start": 15.5, "end": 20.0},
               {"kind": "cpu", "start": 1.0, "end": 50.0}]
    assert b.ray_gpu_seconds(records) == pytest.approx(35.0)  # from placement, not from work start
    assert b.makespan(0.5, records) == pytest.approx(49.5)


def test_slurm_gpu_seconds_from_node_records():
    nodes = [
        {"role": "head", "gpus": 1, "phase": "ended", "started": "2026-12-07T00:00:00Z", "updated": "2026-12-07T00:10:00.5Z"},
        {"role": "worker", "gpus": 2, "phase": "failed", "started": "2026-12-07T00:01:00Z", "updated": "2026-12-07T00:02:00Z"},
        # Still running: counted to now.
        {"role": "worker", "gpus": 1, "phase": "running", "started": "2026-12-07T00:09:00Z", "updated": "2026-12-07T00:09:30Z"},
        {"role": "driver", "gpus": 0, "phase": "ended", "started": "2026-12-07T00:00:10Z", "updated": "2026-12-07T00:10:00Z"},
        {"role": "worker", "gpus": 1, "phase": "pending", "started": "0001-01-01T00:00:00Z", "updated": "2026-12-07T00:09:00Z"},
    ]
    now = b.go_time("2026-12-07T00:10:00Z")
    total, head = b.slurm_gpu_seconds(nodes, now)
    assert head == pytest.approx(600.5)
    assert total == pytest.approx(600.5 + 2 * 60 + 60)


def test_gpu_split_of_worker_jobs():
    nodes = [
        {"job": "5", "role": "head", "gpus": 1, "phase": "ended", "started": "2026-12-07T00:00:00Z", "updated": "2026-12-07T00:10:00Z"},
        {"job": "7_0", "role": "worker", "gpus": 1, "phase": "ended", "started": "2026-12-07T00:01:00Z", "updated": "2026-12-07T00:03:00Z"},
    ]
    t = b.go_time("2026-12-07T00:01:00Z")
    records = [{"kind": "gpu", "job": "7_0", "placed": t + 10, "start": t + 10, "end": t + 40},
               {"kind": "gpu", "job": "7_0", "placed": t + 50, "start": t + 50, "end": t + 100},
               {"kind": "gpu", "job": "5", "placed": t, "start": t, "end": t + 500}]  # the head's: not a worker's
    assert b.gpu_split(nodes, records, t + 1000) == pytest.approx({"before": 10.0, "actors": 80.0, "rest": 30.0})
