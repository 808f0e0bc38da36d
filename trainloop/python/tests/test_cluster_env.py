"""draining_from_env reads the node records the Go supervisors write."""
import json

from sraybatch_trainloop import draining_from_env


def test_outside_a_driver_job_there_is_no_hook(monkeypatch):
    monkeypatch.delenv("SRAYBATCH_CLUSTER_DIR", raising=False)
    assert draining_from_env() is None


def test_reads_the_phase_and_refreshes_after_max_age(monkeypatch, tmp_path):
    (tmp_path / "nodes").mkdir()
    record = tmp_path / "nodes" / "7_0.json"
    record.write_text(json.dumps({"schema_version": 1, "job": "7_0", "phase": "running"}))
    monkeypatch.setenv("SRAYBATCH_CLUSTER_DIR", str(tmp_path))
    is_draining = draining_from_env(max_age_s=0)
    assert is_draining("7_0") is False
    record.write_text(json.dumps({"schema_version": 1, "job": "7_0", "phase": "draining"}))
    assert is_draining("7_0") is True
    assert is_draining("8") is False  # no record yet
    (tmp_path / "nodes" / "9.json").write_text("{torn")
    assert is_draining("9") is False


def test_caches_within_max_age(monkeypatch, tmp_path):
    (tmp_path / "nodes").mkdir()
    record = tmp_path / "nodes" / "5.json"
    record.write_text(json.dumps({"phase": "running"}))
    monkeypatch.setenv("SRAYBATCH_CLUSTER_DIR", str(tmp_path))
    is_draining = draining_from_env(max_age_s=60)
    assert is_draining("5") is False
    record.write_text(json.dumps({"phase": "draining"}))
    assert is_draining("5") is False  # cached


def test_time_limit_takes_the_sooner_warning(monkeypatch, tmp_path):
    import time

    from sraybatch_trainloop import time_limit_from_env

    (tmp_path / "nodes").mkdir()
    monkeypatch.setenv("SRAYBATCH_CLUSTER_DIR", str(tmp_path))
    monkeypatch.setenv("SRAYBATCH_HEAD_JOB", "1")
    monkeypatch.setenv("SRAYBATCH_JOB", "2")
    seconds_left = time_limit_from_env()
    assert seconds_left() is None  # no records, no warning
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".123456789Z"
    (tmp_path / "nodes" / "1.json").write_text(json.dumps({"phase": "running", "time_limit_at": stamp(time.time() + 300)}))
    (tmp_path / "nodes" / "2.json").write_text(json.dumps({"phase": "running"}))
    assert 295 < seconds_left() <= 301
    (tmp_path / "nodes" / "2.json").write_text(json.dumps({"phase": "running", "time_limit_at": stamp(time.time() + 100)}))
    assert 95 < seconds_left() <= 101
