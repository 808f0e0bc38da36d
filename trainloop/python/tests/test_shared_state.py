"""Python's side of the state shared with Go, checked against the fixture both sides' tests read."""

import json
from pathlib import Path

import pytest

from sraybatch_trainloop import events, state

FIXTURE = Path(__file__).resolve().parents[3] / "testdata" / "shared-state.json"


@pytest.fixture(scope="module")
def shared():
    return json.loads(FIXTURE.read_text())


def test_job_resource(shared):
    assert state.JOB_RESOURCE_PREFIX == shared["job_resource_prefix"]
    assert state.job_resource("7_0") == shared["job_resource_prefix"] + "7_0"
    for case in shared["job_resource_cases"]:
        assert state.job_key(case["resources"]) == case["job"], case


def test_cluster_dir_layout(shared):
    layout = shared["cluster_dir"]
    assert state.NODE_RECORD_PATH == layout["node_record"]
    assert state.EVENTS_PATH == layout["events"]
    assert state.node_record_path("/c", "7_0") == "/c/" + layout["node_record"].format(job="7_0")


def test_env_names(shared):
    env = shared["env"]
    assert (state.ENV_CLUSTER_DIR, state.ENV_EVENTS, state.ENV_JOB, state.ENV_HEAD_JOB, state.ENV_GENERATION, state.ENV_RESUMED) == (
        env["cluster_dir"],
        env["events"],
        env["job"],
        env["head_job"],
        env["generation"],
        env["resumed"],
    )


def test_node_record(shared):
    record = shared["node_record"]
    assert state.PHASE_FIELD == record["phase_field"]
    assert state.TIME_LIMIT_FIELD == record["time_limit_field"]
    assert list(state.PHASES) == record["phases"]
    assert state.DRAINING_PHASE == record["draining_phase"]
    example = record["time_limit_at_example"]
    assert state.parse_time(example["text"]) == pytest.approx(example["unix"], abs=1e-6)


def test_event_schema(shared):
    assert set(events.SCHEMA) == set(shared["events"])
    for name, fields in events.SCHEMA.items():
        required = {field for field, (_, is_required) in fields.items() if is_required}
        assert required == set(shared["events"][name]), name
        optional = set(fields) - required
        assert optional == set(shared["optional_fields"].get(name, [])), name


def test_timeline_event_names_are_no_file_events(shared):
    """The timeline's own events (Go derives them from the state files) never
    share a name with an event a file holds, so a reader of either knows which."""
    timeline = shared["timeline_events"]
    assert timeline, "the fixture lists the timeline's events"
    assert not set(timeline) & set(events.SCHEMA)
    for name in timeline:
        with pytest.raises(ValueError):
            events.EventLog(None).emit(name)


def test_event_stream_validates(shared):
    for line in shared["event_stream"]["lines"]:
        assert events.validate(json.loads(line)) == [], line


def test_cluster_events_validate(shared):
    """The head's cluster events (written by Go) pass Python's validator."""
    assert shared["cluster_dir"]["cluster_events"] == "events/cluster.jsonl"
    lines = shared["cluster_event_lines"]
    assert {json.loads(line)["event"] for line in lines} == {"job_state", "cluster_sample"}
    for line in lines:
        assert events.validate(json.loads(line)) == [], line
    bad = dict(json.loads(lines[0]), membership="running")
    assert events.validate(bad) != []
