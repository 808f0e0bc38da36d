import io
import json

import pytest

from sraybatch_trainloop import EventLog, read_events, validate


def test_emit_writes_one_flushed_line_per_event(tmp_path):
    path = tmp_path / "ev.jsonl"
    log = EventLog(path)
    log.emit("node_joined", node_id="ab" * 28, job="7_0", gpus=4)
    # flushed: readable before close
    assert read_events(path)[0]["job"] == "7_0"
    log.emit("step_done", step=1, actors=4, mean_duration_s=1.02, losses=[0.5, 0.4])
    log.close()
    recs = read_events(path)
    assert [r["event"] for r in recs] == ["node_joined", "step_done"]
    assert all(validate(r) == [] for r in recs)
    assert isinstance(recs[0]["ts"], float)


def test_stream_and_env(tmp_path, monkeypatch):
    buf = io.StringIO()
    EventLog(buf).emit("head_time_limit", seconds_left=300)
    assert json.loads(buf.getvalue())["seconds_left"] == 300
    monkeypatch.delenv("SRAYBATCH_EVENTS", raising=False)
    EventLog.from_env().emit("node_left", node_id="x", job="1")  # no file: silently nothing
    path = tmp_path / "env.jsonl"
    monkeypatch.setenv("SRAYBATCH_EVENTS", str(path))
    EventLog.from_env().emit("node_left", node_id="x", job="1")
    assert read_events(path)[0]["event"] == "node_left"


def test_validate_flags_problems():
    assert validate({"ts": 1.0, "event": "nope"}) == ["event: unknown name 'nope'"]
    assert validate({"ts": 1.0, "event": "node_left", "job": 3}) == [
        "node_left.node_id: missing",
        "node_left.job: 3 is not str",
    ]
    bad_reason = {"ts": 1.0, "event": "actor_lost", "actor": "a", "node_id": "n", "job": "1", "reason": "x"}
    assert validate(bad_reason) != []
    with pytest.raises(ValueError):
        EventLog(None).emit("not_an_event")
