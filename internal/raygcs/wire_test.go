package raygcs

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The fixtures under testdata are written by testdata/gen_fixtures.py with
// Ray's own protobuf classes (some are bytes captured from a live Ray 2.60);
// each NAME.bin has a NAME.json saying what it means. Regenerate with
//
//	.venv/bin/python internal/raygcs/testdata/gen_fixtures.py

// fixtures returns the fixture names (without .bin) starting with prefix.
func fixtures(t *testing.T, prefix string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", prefix+"*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no testdata/%s*.bin: run testdata/gen_fixtures.py", prefix)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".bin"))
	}
	return names
}

// readFixture returns NAME.bin and unmarshals NAME.json into want.
func readFixture(t *testing.T, name string, want any) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields() // a field the generator names must exist here
	if err := dec.Decode(want); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return data
}

// sameJSON compares got and want through their JSON form, which is how the
// fixtures state them (maps never nil, empty slices null).
func sameJSON(t *testing.T, name string, got, want any) {
	t.Helper()
	g, err := json.MarshalIndent(got, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.MarshalIndent(want, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s: decoded\n%s\nwant\n%s", name, g, w)
	}
}

func TestDecodeClusterStateFixtures(t *testing.T) {
	for _, name := range fixtures(t, "state_") {
		t.Run(name, func(t *testing.T) {
			var want ClusterState
			data := readFixture(t, name, &want)
			got, err := decodeClusterStateReply(data)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, name, got, want)
		})
	}
}

// TestDecodeClusterStateMeaning spells out, independent of the generator,
// what the synthetic fixtures exercise, so a generator bug that made both
// sides agree on nonsense would still fail here.
func TestDecodeClusterStateMeaning(t *testing.T) {
	var ignored ClusterState
	nodes, err := decodeClusterStateReply(readFixture(t, "state_nodes", &ignored))
	if err != nil {
		t.Fatal(err)
	}
	if nodes.Version != 42 || len(nodes.Nodes) != 6 {
		t.Fatalf("version %d, %d nodes; want 42, 6", nodes.Version, len(nodes.Nodes))
	}
	head, worker := nodes.Nodes[0], nodes.Nodes[1]
	if !head.IsHead() || worker.IsHead() || head.Status != NodeRunning || head.Total["GPU"] != 1 || head.Available["GPU"] != 0 {
		t.Errorf("head = %+v", head)
	}
	if worker.Status != NodeIdle || worker.IdleFor != 123456*time.Millisecond ||
		worker.Labels["clash"] != "dynamic" || worker.Labels["sraybatch/job"] != "2181" ||
		worker.ID != hex.EncodeToString([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28}) {
		t.Errorf("worker = %+v", worker)
	}
	var statuses []NodeStatus
	for _, n := range nodes.Nodes {
		statuses = append(statuses, n.Status)
	}
	wantStatuses := []NodeStatus{NodeRunning, NodeIdle, NodeDraining, NodeDead, NodeUnknown, NodeUnknown}
	if !equalSlices(statuses, wantStatuses) {
		t.Errorf("statuses %v, want %v", statuses, wantStatuses)
	}

	demand, err := decodeClusterStateReply(readFixture(t, "state_demand", &ignored))
	if err != nil {
		t.Fatal(err)
	}
	var strategies []Strategy
	for _, g := range demand.Gangs {
		strategies = append(strategies, g.Strategy)
	}
	wantStrategies := []Strategy{StrategyStrictSpread, StrategyPack, StrategyStrictPack, StrategySpread, StrategyStrictSpread, StrategyUnknown}
	if !equalSlices(strategies, wantStrategies) {
		t.Errorf("strategies %v, want %v (the empty gang dropped)", strategies, wantStrategies)
	}
	if g := demand.Gangs[3]; g.State != "RESCHEDULING" || g.ID != "1234" {
		t.Errorf("gang 3 = %+v", g)
	}
	if len(demand.Pending) != 4 || demand.Pending[1].Count != 2 || demand.Pending[1].Request.Resources["GPU"] != 1 {
		t.Fatalf("pending = %+v", demand.Pending)
	}
	// The empty selector Ray 2.60 sends with a plain task holds anywhere.
	if sels := demand.Pending[1].Request.Selectors; len(sels) != 1 || !Satisfied(sels, nil) {
		t.Errorf("plain task's selectors = %+v, want one that any node satisfies", sels)
	}
	sels := demand.Pending[3].Request.Selectors
	if got := fmt.Sprint(sels); got != "[ray.io/node-group in (h100) gpu !in (a100,v100)]" {
		t.Errorf("selectors = %s", got)
	}
	for labels, want := range map[string]bool{"ray.io/node-group=h100": true, "gpu=h100": true, "": true, "gpu=a100": false} {
		k, v, _ := strings.Cut(labels, "=")
		if got := Satisfied(sels, map[string]string{k: v}); got != want {
			t.Errorf("Satisfied(%s, %q) = %v, want %v", sels, labels, got, want)
		}
	}
	if len(demand.Constraints) != 2 || demand.Constraints[0].Count != 3 {
		t.Errorf("constraints = %+v", demand.Constraints)
	}
}

func equalSlices[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeDrainReplyFixtures(t *testing.T) {
	for _, name := range fixtures(t, "drainreply_") {
		t.Run(name, func(t *testing.T) {
			var want struct {
				Accepted  bool
				Rejection string
			}
			data := readFixture(t, name, &want)
			accepted, rejection, err := decodeDrainReply(data)
			if err != nil {
				t.Fatal(err)
			}
			if accepted != want.Accepted || rejection != want.Rejection {
				t.Errorf("got (%v, %q), want (%v, %q)", accepted, rejection, want.Accepted, want.Rejection)
			}
		})
	}
}

func TestDecodeKVReplyFixtures(t *testing.T) {
	for _, name := range fixtures(t, "kvreply_") {
		t.Run(name, func(t *testing.T) {
			var want struct {
				Found       bool
				Constraints []RequestCount
				Error       bool
			}
			data := readFixture(t, name, &want)
			value, found, err := decodeKVGetReply(data)
			if (err != nil) != want.Error || found != want.Found {
				t.Fatalf("found %v, err %v; want found %v, error %v", found, err, want.Found, want.Error)
			}
			if !found {
				return
			}
			got, err := decodeResourceRequestKV(value)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, name, got, want.Constraints)
		})
	}
}

// TestEncodeDrainRequest: Go's encoding must be the bytes Python's protobuf
// writes for the same request, so the GCS reads what Ray's own client sends.
func TestEncodeDrainRequest(t *testing.T) {
	for _, name := range fixtures(t, "drainrequest_") {
		t.Run(name, func(t *testing.T) {
			var args struct {
				NodeID     string
				Reason     DrainReason
				Message    string
				DeadlineMs int64
			}
			want := readFixture(t, name, &args)
			id, err := hex.DecodeString(args.NodeID)
			if err != nil {
				t.Fatal(err)
			}
			if got := encodeDrainRequest(id, args.Reason, args.Message, args.DeadlineMs); !bytes.Equal(got, want) {
				t.Errorf("encoded %x\nwant    %x", got, want)
			}
		})
	}
}

func TestEncodeKVGetRequest(t *testing.T) {
	for _, name := range fixtures(t, "kvrequest_") {
		t.Run(name, func(t *testing.T) {
			var args struct{ Key, Namespace string }
			want := readFixture(t, name, &args)
			if got := encodeKVGetRequest(args.Key, args.Namespace); !bytes.Equal(got, want) {
				t.Errorf("encoded %x\nwant    %x", got, want)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	nodeWith := func(inner []byte) []byte { // a reply holding one node
		node := protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), inner)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), node)
	}
	cases := map[string][]byte{
		"truncated tag":         {0x80},
		"truncated varint":      {0x08, 0xff},
		"overlong varint":       {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"length past the end":   {0x0a, 0x05, 0x01},
		"field number zero":     {0x00, 0x01},
		"stray end group":       protowire.AppendTag(nil, 7, protowire.EndGroupType),
		"unterminated group":    protowire.AppendTag(nil, 7, protowire.StartGroupType),
		"truncated fixed64":     nodeWith([]byte{0x22, 0x03, 0x11, 0x00, 0x00}), // available entry, value cut
		"bad nested node":       nodeWith([]byte{0x0a, 0x7f}),
		"reserved wire type 6+": {0x0e},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeClusterStateReply(data); err == nil {
				t.Errorf("decoded % x without error", data)
			}
		})
	}
	if _, _, err := decodeDrainReply([]byte{0x08}); err == nil {
		t.Error("truncated drain reply decoded without error")
	}
	if _, _, err := decodeKVGetReply([]byte{0x12, 0x09}); err == nil {
		t.Error("truncated kv reply decoded without error")
	}
	if _, err := decodeResourceRequestKV([]byte(`{"GPU": 1}`)); err == nil {
		t.Error("a kv value that is not a list decoded without error")
	}
}

// TestDecodeTruncations: every prefix of real bytes is an error or a value,
// never a panic.
func TestDecodeTruncations(t *testing.T) {
	var ignored ClusterState
	data := readFixture(t, "state_captured_ray260", &ignored)
	for i := range data {
		_, _ = decodeClusterStateReply(data[:i])
	}
}

func FuzzDecodeClusterState(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzDecodeClusterState (real and synthetic
	// replies, a truncated one, garbage), written by gen_fixtures.py.
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeClusterStateReply(data)
		if err != nil {
			return
		}
		for _, n := range s.Nodes {
			if n.Total == nil || n.Available == nil || n.Labels == nil {
				t.Fatalf("node %q has a nil map", n.ID)
			}
		}
		for _, g := range s.Gangs {
			if len(g.Bundles) == 0 {
				t.Fatalf("gang %q without bundles kept", g.Details)
			}
		}
	})
}

func TestParseGangDetails(t *testing.T) {
	cases := []struct {
		in       string
		id       string
		strategy Strategy
		state    string
	}{
		{"e4e67af0f3c077f36328173f6d3a01000000:STRICT_SPREAD|PENDING", "e4e67af0f3c077f36328173f6d3a01000000", StrategyStrictSpread, "PENDING"},
		{"ab:STRICT_PACK|RESCHEDULING", "ab", StrategyStrictPack, "RESCHEDULING"},
		{"ab:SPREAD|", "ab", StrategySpread, ""},
		{"ab:NEW|PENDING", "ab", StrategyUnknown, "PENDING"},
		{"", "", StrategyUnknown, ""},
		{"ab:PACK", "", StrategyUnknown, ""},
		{"no colon|PENDING", "", StrategyUnknown, ""},
	}
	for _, c := range cases {
		id, s, state := parseGangDetails(c.in)
		if id != c.id || s != c.strategy || state != c.state {
			t.Errorf("parseGangDetails(%q) = %q, %q, %q; want %q, %q, %q", c.in, id, s, state, c.id, c.strategy, c.state)
		}
	}
}

func TestSatisfied(t *testing.T) {
	in := func(k string, v ...string) LabelConstraint { return LabelConstraint{Key: k, Op: LabelIn, Values: v} }
	notIn := func(k string, v ...string) LabelConstraint { return LabelConstraint{Key: k, Op: LabelNotIn, Values: v} }
	h100 := map[string]string{"ray.io/node-group": "h100", "zone": "a"}
	for _, c := range []struct {
		name string
		sels []LabelSelector
		want bool
	}{
		{"no selector", nil, true},
		{"in", []LabelSelector{{[]LabelConstraint{in("ray.io/node-group", "a100", "h100")}}}, true},
		{"in, label missing", []LabelSelector{{[]LabelConstraint{in("gpu", "h100")}}}, false},
		{"not in, label missing", []LabelSelector{{[]LabelConstraint{notIn("gpu", "h100")}}}, true},
		{"not in", []LabelSelector{{[]LabelConstraint{notIn("zone", "a")}}}, false},
		{"every constraint", []LabelSelector{{[]LabelConstraint{in("ray.io/node-group", "h100"), in("zone", "b")}}}, false},
		{"a fallback", []LabelSelector{{[]LabelConstraint{in("zone", "b")}}, {[]LabelConstraint{in("zone", "a")}}}, true},
		{"unknown operator", []LabelSelector{{[]LabelConstraint{{Key: "zone", Values: []string{"a"}}}}}, false},
	} {
		if got := Satisfied(c.sels, h100); got != c.want {
			t.Errorf("%s: Satisfied(%v) = %v, want %v", c.name, c.sels, got, c.want)
		}
	}
}
