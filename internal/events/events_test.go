package events

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/sharedstate"
)

// fileEvents and timelineEvents are every struct of the vocabulary.
var (
	fileEvents = []FileEvent{
		NodeJoined{}, ActorSpawned{}, ActorLost{}, ActorRestarted{}, StateSynced{}, CheckpointWritten{},
		NodeExcluded{}, NodeDraining{}, NodeLeft{}, StepDone{}, HeadTimeLimit{}, DriverStopping{},
		AutoscalerDecision{}, JobState{}, ClusterSample{},
	}
	timelineEvents = []Payload{
		Submitted{}, JobStarted{}, JobEnded{}, TimeLimitWarning{}, HeadUp{}, HeadStopping{}, DownRequested{}, Handover{},
	}
)

// required is the JSON fields a struct always writes (those without
// omitempty), ts left out.
func required(v any) []string { return fields(v, false) }

// optional are the fields of an event's struct it may leave out (omitempty).
func optional(v any) []string { return fields(v, true) }

func fields(v any, omitted bool) []string {
	out := []string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for f := range t.Fields() {
			if f.Anonymous {
				if f.Type != reflect.TypeFor[Stamp]() {
					walk(f.Type)
				}
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "-" && strings.Contains(opts, "omitempty") == omitted {
				out = append(out, name)
			}
		}
	}
	walk(reflect.TypeOf(v))
	slices.Sort(out)
	return out
}

// checkVocabulary checks structs against one section of the fixture: the
// same names, each struct's required fields the fixture's, and its
// optional ones the fixture's optional_fields.
func checkVocabulary[T Payload](t *testing.T, section string, structs []T, schema, optionalFields map[string][]string) {
	t.Helper()
	names := map[string]bool{}
	for _, s := range structs {
		names[s.Name()] = true
		want, ok := schema[s.Name()]
		if !ok {
			t.Errorf("Go's %T is %q, which %s of the shared schema lacks", s, s.Name(), section)
			continue
		}
		want = slices.Sorted(slices.Values(want))
		if got := required(s); !slices.Equal(got, want) {
			t.Errorf("%s: Go requires %v, the shared schema %v", s.Name(), got, want)
		}
		wantOptional := slices.Sorted(slices.Values(append([]string{}, optionalFields[s.Name()]...)))
		if got := optional(s); !slices.Equal(got, wantOptional) {
			t.Errorf("%s: Go's optional fields are %v, the shared schema's %v", s.Name(), got, wantOptional)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(schema)) {
		if !names[name] {
			t.Errorf("the shared schema's %s has %q, which Go has no struct for", section, name)
		}
	}
}

// Every event is a struct here and a name in testdata/shared-state.json,
// which pytest checks Python's events.SCHEMA against: the same names, the
// same required fields, and no timeline event named as a file event.
func TestVocabularyIsTheSharedSchema(t *testing.T) {
	t.Parallel()
	fx := sharedstate.Load(t)
	checkVocabulary(t, "events", fileEvents, fx.Events, fx.OptionalFields)
	checkVocabulary(t, "timeline_events", timelineEvents, fx.TimelineEvents, fx.OptionalFields)
	for name := range fx.OptionalFields {
		_, file := fx.Events[name]
		_, derived := fx.TimelineEvents[name]
		if !file && !derived {
			t.Errorf("optional_fields names %q, which is no event", name)
		}
	}
	for name := range fx.TimelineEvents {
		if _, ok := fx.Events[name]; ok {
			t.Errorf("%q is both a file event and a timeline event", name)
		}
	}
}

// decodeStrict decodes an event into its struct, failing on a field the
// struct does not know or a value of another type.
func decodeStrict(t *testing.T, e Event) FileEvent {
	t.Helper()
	for _, s := range fileEvents {
		if s.Name() != e.Name {
			continue
		}
		p := reflect.New(reflect.TypeOf(s))
		dec := json.NewDecoder(bytes.NewReader(e.line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p.Interface()); err != nil && !strings.Contains(err.Error(), `unknown field "event"`) {
			t.Fatalf("%s: %v", e.line, err)
		}
		return p.Elem().Interface().(FileEvent)
	}
	t.Fatalf("no struct for %q", e.Name)
	return nil
}

// The fixture's lines (the driver's, as Python writes them, and the head's,
// as Go writes them) decode into their structs field for field, and the
// head's are written back exactly.
func TestSharedLinesDecode(t *testing.T) {
	t.Parallel()
	fx := sharedstate.Load(t)
	for _, line := range fx.EventStream.Lines {
		e, ok := parse([]byte(line))
		if !ok {
			t.Fatalf("not an event: %s", line)
		}
		decodeStrict(t, e)
	}
	for _, line := range fx.ClusterEventLines {
		e, ok := parse([]byte(line))
		if !ok {
			t.Fatalf("not an event: %s", line)
		}
		again, err := marshal(decodeStrict(t, e))
		if err != nil {
			t.Fatal(err)
		}
		var got, want map[string]any
		json.Unmarshal(again, &got)
		json.Unmarshal([]byte(line), &want)
		if !maps.Equal(got, want) {
			t.Errorf("Go writes %s\nthe fixture has %s", again, line)
		}
	}
	var js JobState
	e, _ := parse([]byte(fx.ClusterEventLines[1]))
	if err := e.Decode(&js); err != nil || js.Membership != cluster.MembershipWaiting || js.Role != cluster.RoleWorker || js.GPUs != 2 || js.TS != 10 {
		t.Errorf("decoded %+v, %v", js, err)
	}
}
