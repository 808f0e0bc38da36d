// Package timeline is one ordered history of a cluster, merged from every
// record the cluster keeps: its submissions (one file per sbatch call), its
// jobs' own records (started, ended and how, time-limit warnings), head.json,
// head-ending.json and down.json, and the event files Go and Python share
// (testdata/shared-state.json): the head's events/cluster.jsonl (job_state,
// cluster_sample), each driver's events/<job>.jsonl and the autoscaler's
// events/autoscaler.jsonl. The events it derives from the state files
// (submitted, job_started, …) are internal/events' timeline events, as the
// files' events are its file events.
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
	"github.com/sraybatch/sraybatch/internal/events"
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
	// Name is the event's (internal/events' Name*).
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
	// unsettled marks a handover whose facts are not all in yet: a
	// Follower holds it back until they are (handoverSettled).
	unsettled bool
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
	Cluster []events.Event
	// Autoscaler are the autoscaler's decisions (events/autoscaler.jsonl).
	Autoscaler []events.Event
	// Drivers are each driver job's events (events/<job>.jsonl), by its job key.
	Drivers map[string][]events.Event
	// Generations are a rollover cluster's published generations and
	// Handovers its handover records, ascending; Crossings the drivers'
	// steps around each generation's publication, by that generation.
	Generations []cluster.Generation
	Handovers   []cluster.Handover
	Crossings   map[int][]cluster.Crossing
}

// Merge is the cluster's timeline: every source's events, ordered by time;
// events at the same time keep the order of the sources above (a
// submission before the job's start, the head's view before a driver's).
func Merge(s Sources) []Event {
	roles := map[string]cluster.Role{}
	var out []Event
	for _, sub := range s.Submissions {
		submitted := events.Submitted{JobID: sub.JobID, Tasks: sub.Tasks, Autoscaled: sub.Autoscaled, Type: sub.Type}
		for _, key := range sub.JobKeys() {
			roles[key] = sub.Role
			out = append(out, derived(sub.Submitted, key, sub.Role, SourceSubmission, submitted))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(s.Records)) {
		out = appendRecordEvents(out, key, s.Records[key], s.DrainBefore)
	}
	out = appendHeads(out, s)
	if h := s.HeadEnding; h != nil {
		out = append(out, derived(h.At, h.Job, cluster.RoleHead, SourceHead, events.HeadStopping{Reason: h.Reason}))
	}
	if d := s.Down; d != nil {
		out = append(out, derived(d.Requested, "", "", SourceDown, events.DownRequested{}))
	}
	out = appendHandovers(out, s)
	out = appendFileEvents(out, s.Cluster, SourceCluster, "", roles)
	for _, driver := range slices.Sorted(maps.Keys(s.Drivers)) {
		out = appendFileEvents(out, s.Drivers[driver], DriverSource(driver), driver, roles)
	}
	out = appendFileEvents(out, s.Autoscaler, SourceAutoscaler, "", roles)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// appendRecordEvents adds what a job's own record tells: its start, SLURM's
// time-limit warning (drainBefore before the limit) and its end.
func appendRecordEvents(out []Event, key string, rec cluster.NodeRecord, drainBefore time.Duration) []Event {
	if !rec.Started.IsZero() {
		out = append(out, derived(rec.Started, key, rec.Role, SourceRecord, events.JobStarted{Node: rec.SlurmNode}))
	}
	if rec.TimeLimitAt != nil {
		out = append(out, derived(rec.TimeLimitAt.Add(-drainBefore), key, rec.Role, SourceRecord,
			events.TimeLimitWarning{TimeLimitAt: rec.TimeLimitAt.UTC().Format(time.RFC3339)}))
	}
	if rec.Final() {
		out = append(out, derived(rec.Updated, key, rec.Role, SourceRecord,
			events.JobEnded{Phase: rec.Phase, Outcome: rec.Outcome, Reason: rec.Reason, ExitCode: rec.ExitCode}))
	}
	return out
}

// appendFileEvents adds an event file's lines: the job an event names is its
// job (a driver's step_done names none: it is the driver's own).
func appendFileEvents(out []Event, evs []events.Event, source, ownJob string, roles map[string]cluster.Role) []Event {
	for _, e := range evs {
		fields, err := e.Fields()
		if err != nil {
			continue // a line malformed past its head is no event
		}
		ev := Event{Time: e.Time(), Name: e.Name, Job: ownJob, Source: source, Fields: map[string]json.RawMessage{}}
		for k, v := range fields {
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

// derived is a timeline event about job, its fields p's.
func derived(at time.Time, job string, role cluster.Role, source string, p events.Payload) Event {
	ev := Event{Time: at.UTC(), Name: p.Name(), Job: job, Role: role, Source: source}
	b, err := json.Marshal(p)
	if err == nil {
		err = json.Unmarshal(b, &ev.Fields)
	}
	if err != nil { // the timeline events' structs hold strings, numbers and booleans
		panic(fmt.Sprintf("timeline event %s: %v", p.Name(), err))
	}
	return ev
}

// Decode unmarshals the event's fields into v (an *events.JobState, say):
// all of them but its job and role, which the Event holds itself.
func (e Event) Decode(v any) error {
	b, err := json.Marshal(e.Fields)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return fmt.Errorf("%s event: %w", e.Name, err)
	}
	return nil
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
	}{events.TS(e.Time), e.Time.UTC().Format(time.RFC3339Nano), e.Name, e.Job, e.Role, e.Source, fields})
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

// appendHeads adds each head's publication: every generation's of a
// rollover cluster, else head.json's.
func appendHeads(out []Event, s Sources) []Event {
	for _, g := range s.Generations {
		out = append(out, derived(g.Published, g.Job, cluster.RoleHead, SourceHead, events.HeadUp{
			Address: g.Address, Node: g.SlurmNode, RayVersion: g.RayVersion,
			Generation: g.Generation, How: string(g.How), PreviousHead: g.PreviousHeadJob}))
	}
	if h := s.Head; h != nil && len(s.Generations) == 0 {
		out = append(out, derived(h.Published, h.Job, cluster.RoleHead, SourceHead,
			events.HeadUp{Address: h.Address, Node: h.SlurmNode, RayVersion: h.RayVersion}))
	}
	return out
}

// appendHandovers adds each handover at its start, with its facts so far.
func appendHandovers(out []Event, s Sources) []Event {
	next := map[int]*cluster.Generation{}
	for i := range s.Generations {
		next[s.Generations[i].Generation-1] = &s.Generations[i]
	}
	for _, h := range s.Handovers {
		n, crossings := next[h.Generation], s.Crossings[h.Generation+1]
		ev := derived(h.Started, h.HeadJob, cluster.RoleHead, SourceHead, handoverEvent(cluster.HandoverStatusOf(h, n, crossings)))
		ev.unsettled = !handoverSettled(h, n, crossings)
		out = append(out, ev)
	}
	return out
}

// handoverSettled reports whether a handover's facts are all in: its
// generation sealed, the next one published (next), and every driver that
// stepped before the publication stepped after it too.
func handoverSettled(h cluster.Handover, next *cluster.Generation, crossings []cluster.Crossing) bool {
	if h.Sealed == nil || next == nil {
		return false
	}
	for _, c := range crossings {
		if c.Before != nil && c.After == nil {
			return false
		}
	}
	return true
}

// handoverEvent is a handover as the timeline shows it.
func handoverEvent(h cluster.HandoverStatus) events.Handover {
	return events.Handover{Generation: h.Generation, Successor: h.NewHeadJob, How: string(h.How), Reason: h.Why,
		SealedS: h.SealedAfterS, PublishedS: h.PublishedAfterS, GapS: h.GapS, StepsLost: h.StepsLost}
}
