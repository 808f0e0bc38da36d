package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The cluster's own events, written by the head job's supervisor to
// events/cluster.jsonl in the event schema Go and Python share
// (testdata/shared-state.json; Python validates them with events.validate).
const (
	// EventJobState is a job whose SLURM state or Ray membership changed, as
	// the head saw it (its first sighting included).
	EventJobState = "job_state"
	// EventClusterSample is the cluster's GPUs: written when a value
	// changes, and at least every ClusterSampleEvery.
	EventClusterSample = "cluster_sample"
	// EventAutoscalerDecision is the head's autoscaler deciding (written to
	// events/autoscaler.jsonl; the observer counts them for /metrics).
	EventAutoscalerDecision = "autoscaler_decision"
)

// ClusterSampleEvery bounds the gap between two cluster_sample events, so a
// reader can tell an unchanged cluster from a silent one.
const ClusterSampleEvery = time.Minute

// JobStateEvent is one job_state line.
type JobStateEvent struct {
	TS         float64    `json:"ts"`
	Event      string     `json:"event"`
	Job        string     `json:"job"`
	Role       Role       `json:"role"`
	SlurmState string     `json:"slurm_state"`
	Membership Membership `json:"membership"`
	GPUs       int        `json:"gpus"`
}

// ClusterSampleEvent is one cluster_sample line.
type ClusterSampleEvent struct {
	TS            float64 `json:"ts"`
	Event         string  `json:"event"`
	GPUsRequested int     `json:"gpus_requested"`
	GPUsJoined    int     `json:"gpus_joined"`
	// GPUsAllocated is what Ray has handed to tasks and actors; fractional
	// GPUs make it a float.
	GPUsAllocated float64 `json:"gpus_allocated"`
	Jobs          int     `json:"jobs"`
}

// Event is one line of any event file: its time, its name, and all its
// fields (ts and event included) for the reader that knows the event.
type Event struct {
	TS     float64
	Name   string
	Fields map[string]json.RawMessage
}

// Time is the event's ts as a time.
func (e Event) Time() time.Time { return UnixSeconds(e.TS) }

// Decode unmarshals the whole line into v (a *JobStateEvent, say).
func (e Event) Decode(v any) error {
	b, err := json.Marshal(e.Fields)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// UnixSeconds is the events' ts (float Unix seconds) as a time.
func UnixSeconds(ts float64) time.Time {
	sec := int64(ts)
	return time.Unix(sec, int64((ts-float64(sec))*1e9)).UTC()
}

// TS is t as an event's ts.
func TS(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// ClusterEventsPath is the head's event file.
func (d Dir) ClusterEventsPath() string { return filepath.Join(d.Path, eventsDir, "cluster.jsonl") }

// AppendEvent appends v as one JSON line with a single write, so concurrent
// readers see whole lines; the file is the user's alone (0600).
func AppendEvent(path string, v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("event for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("event log %s: %w", path, err)
	}
	return f.Close()
}

// ReadEvents reads an event file; a missing file has no events. A last line
// without its newline is being written and is left for the next read; other
// lines that are not an event object are skipped, so one bad writer cannot
// hide the rest of the timeline.
func ReadEvents(path string) ([]Event, error) {
	events, _, err := ReadEventsFrom(path, 0)
	return events, err
}

// ReadEventsFrom is ReadEvents from byte offset on; it also returns the
// offset after the last whole line read, so a follower (`sraybatch events
// -f`) passes it back next time and never rereads a line.
func ReadEventsFrom(path string, offset int64) ([]Event, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, offset, nil
	}
	if err != nil {
		return nil, offset, fmt.Errorf("event log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, fmt.Errorf("event log %s: %w", path, err)
	}
	var out []Event
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) { // nothing more, or a line still being written
			return out, offset, nil
		}
		if err != nil {
			return out, offset, fmt.Errorf("event log %s: %w", path, err)
		}
		offset += int64(len(line))
		if e, ok := parseEvent(line); ok {
			out = append(out, e)
		}
	}
}

func parseEvent(line []byte) (Event, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(line, &fields) != nil {
		return Event{}, false
	}
	var e Event
	if json.Unmarshal(fields["ts"], &e.TS) != nil || json.Unmarshal(fields["event"], &e.Name) != nil || e.Name == "" {
		return Event{}, false
	}
	e.Fields = fields
	return e, true
}
