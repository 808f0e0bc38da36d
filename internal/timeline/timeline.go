// Package timeline is one ordered history of a cluster, merged from every
// record the cluster keeps: its submissions (one file per sbatch call), its
// jobs' own records (started, ended and how, time-limit warnings), head.json,
// head-ending.json and down.json, and the event files Go and Python share
// (testdata/shared-state.json): the head's events/cluster.jsonl (job_state,
// cluster_sample), each driver's events/<job>.jsonl and the autoscaler's
// events/autoscaler.jsonl.
//
// Merge is a pure function of those Sources; Follower reads them from a
// cluster directory, incrementally, for `sraybatch events -f`; Load reads
// them once. `sraybatch events` prints the timeline, and anything that
// draws a cluster's history (the report) reads it the same way.
package timeline

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// Events the timeline derives from the cluster's state files; the event
// files' own events keep their names (node_joined, job_state, …).
const (
	// Submitted: a job was submitted (one per job key of an array).
	// Fields: job_id (the sbatch id), tasks (an array's size), autoscaled.
	Submitted = "submitted"
	// JobStarted: the job's supervisor started on its node. Fields: node.
	JobStarted = "job_started"
	// JobEnded: the job's supervisor recorded its end. Fields: phase
	// (ended or failed), outcome, reason, exit_code (drivers).
	JobEnded = "job_ended"
	// TimeLimitWarning: SLURM warned that the job's time limit is near.
	// Fields: time_limit_at.
	TimeLimitWarning = "time_limit_warning"
	// HeadUp: the head published its address. Fields: address, node, ray_version.
	HeadUp = "head_up"
	// HeadStopping: the head was told to stop. Fields: reason.
	HeadStopping = "head_stopping"
	// DownRequested: `sraybatch down` was asked for.
	DownRequested = "down_requested"
)

// Where an event was read; a driver's events are "driver <job>".
const (
	SourceSubmission = "submission"
	SourceRecord     = "record"
	SourceHead       = "head"
	SourceDown       = "down"
	SourceCluster    = "cluster"
	SourceAutoscaler = "autoscaler"
	sourceDriver     = "driver "
)

// DriverSource is the source of a driver job's events.
func DriverSource(job string) string { return sourceDriver + job }

// Event is one thing that happened to the cluster.
type Event struct {
	Time time.Time
	// Name is the event: one of the constants above, or the event file's own name.
	Name string
	// Job is the job key the event is about ("" for the cluster as a
	// whole), Role that job's role when known.
	Job  string
	Role cluster.Role
	// Source is where the event was read (Source*, DriverSource).
	Source string
	// Fields are the event's other fields, as JSON (the event files' own,
	// without ts, event, job and role).
	Fields map[string]json.RawMessage
}

// Sources is everything a cluster records that the timeline shows.
type Sources struct {
	// DrainBefore is the spec's --drain-before: SLURM's time-limit warning
	// comes this long before the limit.
	DrainBefore time.Duration
	Submissions []cluster.Submission
	Records     map[string]cluster.NodeRecord
	Head        *cluster.HeadInfo
	HeadEnding  *cluster.HeadEnding
	Down        *cluster.DownRequest
	// Cluster are the head's events (events/cluster.jsonl).
	Cluster []cluster.Event
	// Autoscaler are the autoscaler's decisions (events/autoscaler.jsonl).
	Autoscaler []cluster.Event
	// Drivers are each driver job's events (events/<job>.jsonl), by its job key.
	Drivers map[string][]cluster.Event
}

// Merge is the cluster's timeline: every source's events, ordered by time;
// events at the same time keep the order of the sources above (a
// submission before the job's start, the head's view before a driver's).
func Merge(s Sources) []Event {
	roles := map[string]cluster.Role{}
	var out []Event
	for _, sub := range s.Submissions {
		fields := map[string]any{"job_id": sub.JobID}
		if sub.Tasks > 0 {
			fields["tasks"] = sub.Tasks
		}
		if sub.Autoscaled {
			fields["autoscaled"] = true
		}
		for _, key := range sub.JobKeys() {
			roles[key] = sub.Role
			out = append(out, derived(sub.Submitted, Submitted, key, sub.Role, SourceSubmission, fields))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(s.Records)) {
		rec := s.Records[key]
		if !rec.Started.IsZero() {
			out = append(out, derived(rec.Started, JobStarted, key, rec.Role, SourceRecord, map[string]any{"node": rec.SlurmNode}))
		}
		if rec.TimeLimitAt != nil {
			out = append(out, derived(rec.TimeLimitAt.Add(-s.DrainBefore), TimeLimitWarning, key, rec.Role, SourceRecord,
				map[string]any{"time_limit_at": rec.TimeLimitAt.UTC().Format(time.RFC3339)}))
		}
		if rec.Final() {
			fields := map[string]any{"phase": rec.Phase, "outcome": rec.Outcome, "reason": rec.Reason}
			if rec.ExitCode != nil {
				fields["exit_code"] = *rec.ExitCode
			}
			out = append(out, derived(rec.Updated, JobEnded, key, rec.Role, SourceRecord, fields))
		}
	}
	if h := s.Head; h != nil {
		out = append(out, derived(h.Published, HeadUp, h.Job, cluster.RoleHead, SourceHead,
			map[string]any{"address": h.Address, "node": h.SlurmNode, "ray_version": h.RayVersion}))
	}
	if h := s.HeadEnding; h != nil {
		out = append(out, derived(h.At, HeadStopping, h.Job, cluster.RoleHead, SourceHead, map[string]any{"reason": h.Reason}))
	}
	if d := s.Down; d != nil {
		out = append(out, derived(d.Requested, DownRequested, "", "", SourceDown, nil))
	}
	out = appendFileEvents(out, s.Cluster, SourceCluster, "", roles)
	for _, driver := range slices.Sorted(maps.Keys(s.Drivers)) {
		out = appendFileEvents(out, s.Drivers[driver], DriverSource(driver), driver, roles)
	}
	out = appendFileEvents(out, s.Autoscaler, SourceAutoscaler, "", roles)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// appendFileEvents adds an event file's lines: the job an event names is its
// job (a driver's step_done names none: it is the driver's own).
func appendFileEvents(out []Event, events []cluster.Event, source, ownJob string, roles map[string]cluster.Role) []Event {
	for _, e := range events {
		ev := Event{Time: e.Time(), Name: e.Name, Job: ownJob, Source: source, Fields: map[string]json.RawMessage{}}
		for k, v := range e.Fields {
			switch k {
			case "ts", "event":
			case "job":
				var job string
				if json.Unmarshal(v, &job) == nil && job != "" {
					ev.Job = job
				}
			case "role":
				json.Unmarshal(v, &ev.Role)
			default:
				ev.Fields[k] = v
			}
		}
		if ev.Role == "" {
			ev.Role = roles[ev.Job]
		}
		out = append(out, ev)
	}
	return out
}

func derived(at time.Time, name, job string, role cluster.Role, source string, fields map[string]any) Event {
	ev := Event{Time: at.UTC(), Name: name, Job: job, Role: role, Source: source, Fields: map[string]json.RawMessage{}}
	for k, v := range fields {
		b, err := json.Marshal(v)
		if err != nil { // only strings, numbers and booleans come here
			panic(fmt.Sprintf("timeline field %s: %v", k, err))
		}
		ev.Fields[k] = b
	}
	return ev
}

// MarshalJSON writes one event as `sraybatch events -o json` prints it:
// {"ts", "time", "event", "job", "role", "source", "fields"}.
func (e Event) MarshalJSON() ([]byte, error) {
	fields := e.Fields
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	return json.Marshal(struct {
		TS     float64                    `json:"ts"`
		Time   string                     `json:"time"`
		Event  string                     `json:"event"`
		Job    string                     `json:"job,omitempty"`
		Role   cluster.Role               `json:"role,omitempty"`
		Source string                     `json:"source"`
		Fields map[string]json.RawMessage `json:"fields"`
	}{cluster.TS(e.Time), e.Time.UTC().Format(time.RFC3339Nano), e.Name, e.Job, e.Role, e.Source, fields})
}

// Details is the event's fields in one line for people: key=value in key
// order, comma-separated (values are not quoted: JSON output is for
// programs), long Ray ids cut to 8 characters, long lists counted, numbers
// rounded; a driver's event about another job names the driver.
func (e Event) Details() string {
	parts := make([]string, 0, len(e.Fields)+1)
	for _, k := range slices.Sorted(maps.Keys(e.Fields)) {
		parts = append(parts, k+"="+humanValue(e.Fields[k]))
	}
	if driver, ok := strings.CutPrefix(e.Source, sourceDriver); ok && driver != e.Job {
		parts = append(parts, "by driver "+driver)
	}
	return strings.Join(parts, ", ")
}

// maxListItems is how many items of a list Details shows before counting.
const maxListItems = 4

func humanValue(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	return human(v)
}

func human(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if isRayID(x) {
			return x[:8]
		}
		if x == "" {
			return "-"
		}
		return strings.Join(strings.Fields(x), " ") // one line
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(math.Round(x*1000)/1000, 'f', -1, 64)
	case []any:
		if len(x) > maxListItems {
			return fmt.Sprintf("[%d items]", len(x))
		}
		items := make([]string, len(x))
		for i, item := range x {
			items[i] = human(item)
		}
		return "[" + strings.Join(items, ",") + "]"
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// isRayID reports a Ray node, actor or placement group id: long lowercase hex.
func isRayID(s string) bool {
	if len(s) < 16 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
