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
