package events

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestAppendAndReadAll(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cluster.jsonl")
	at := time.Date(2026, 11, 29, 12, 0, 0, 500_000_000, time.UTC)
	if err := Append(path, ClusterSample{Stamp: At(at), GPUsJoined: 2}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("event file %v, %v; want mode 0600", fi, err)
	}
	// a garbage line and a half-written last line are not events
	writeTo(t, path, "not json\n{\"event\": \"job_state\"}\n{\"ts\": 3, \"event\": \"job_st")
	events, err := ReadAll(path)
	if err != nil || len(events) != 1 {
		t.Fatalf("ReadAll = %v, %v; want the one whole event", events, err)
	}
	if !events[0].Time().Equal(at) || events[0].Name != NameClusterSample {
		t.Errorf("event %v at %v; want %s at %v", events[0].Name, events[0].Time(), NameClusterSample, at)
	}
	var s ClusterSample
	if err := events[0].Decode(&s); err != nil || s.GPUsJoined != 2 || !s.Time().Equal(at) {
		t.Errorf("decoded %+v, %v", s, err)
	}
	if none, err := ReadAll(filepath.Join(t.TempDir(), "missing.jsonl")); err != nil || none != nil {
		t.Errorf("a missing file: %v, %v", none, err)
	}
}

// A follower reads each whole line once: a torn last line is neither
// returned nor counted, and comes whole with the next read.
func TestReaderResumes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cluster.jsonl")
	r := NewReader(path)
	if evs, restarted, err := r.Read(); err != nil || evs != nil || restarted || r.Offset() != 0 {
		t.Fatalf("missing file: %v, %v, %d, %v; want nothing at offset 0", evs, restarted, r.Offset(), err)
	}
	first := `{"ts": 1, "event": "a"}` + "\n"
	writeTo(t, path, first+"garbage\n"+`{"ts": 2, "event": "b"`)
	evs, _, err := r.Read()
	if err != nil || len(evs) != 1 || evs[0].Name != "a" {
		t.Fatalf("first read: %v, %v; want event a", evs, err)
	}
	if want := int64(len(first) + len("garbage\n")); r.Offset() != want {
		t.Fatalf("offset after the first read = %d, want %d (whole lines only)", r.Offset(), want)
	}
	writeTo(t, path, "}\n"+`{"ts": 3, "event": "c"}`+"\n")
	evs, restarted, err := r.Read()
	if err != nil || restarted || len(evs) != 2 || evs[0].Name != "b" || evs[1].Name != "c" {
		t.Fatalf("second read: %v, %v, %v; want b and c", evs, restarted, err)
	}
	if st, _ := os.Stat(path); r.Offset() != st.Size() {
		t.Errorf("offset %d, want the file's size %d", r.Offset(), st.Size())
	}
	off := r.Offset()
	if evs, _, err := r.Read(); err != nil || len(evs) != 0 || r.Offset() != off {
		t.Errorf("nothing new: %v, %d, %v", evs, r.Offset(), err)
	}
}

// A file truncated, or replaced by another (even a longer one), is read
// again from its start, and the caller is told to drop what it folded.
func TestReaderNoticesTruncationAndReplacement(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "9.jsonl")
	r := NewReader(path)
	writeTo(t, path, `{"ts": 1, "event": "a"}`+"\n"+`{"ts": 2, "event": "b"}`+"\n")
	if evs, restarted, _ := r.Read(); len(evs) != 2 || restarted {
		t.Fatalf("first read: %v, restarted %v", evs, restarted)
	}
	if err := os.WriteFile(path, []byte(`{"ts": 3, "event": "c"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if evs, restarted, _ := r.Read(); len(evs) != 1 || evs[0].Name != "c" || !restarted {
		t.Fatalf("after truncation: %v, restarted %v; want c from the start", evs, restarted)
	}
	other := filepath.Join(dir, "other.jsonl")
	writeTo(t, other, `{"ts": 4, "event": "d"}`+"\n"+`{"ts": 5, "event": "e"}`+"\n"+`{"ts": 6, "event": "f"}`+"\n")
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if evs, restarted, _ := r.Read(); len(evs) != 3 || evs[0].Name != "d" || !restarted {
		t.Fatalf("after replacement: %v, restarted %v; want d, e, f from the start", evs, restarted)
	}
	if evs, restarted, _ := r.Read(); len(evs) != 0 || restarted {
		t.Errorf("nothing new: %v, restarted %v", evs, restarted)
	}
}

// parse reads a line's head alone where it can, and agrees with a whole
// decode wherever it does; a line malformed past its head is an event that
// fails its Decode.
func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line     string
		ts       float64
		name     string
		ok, fast bool
	}{
		{`{"ts": 1.5, "event": "step_done", "step": 1}`, 1.5, "step_done", true, true},
		{`{"event":"job_state","ts":1795953601.25,"job":"7"}`, 1795953601.25, "job_state", true, true},
		{` { "ts" : 2e3 , "event" : "a" }`, 2000, "a", true, true},
		{`{"job": "7", "ts": 3, "event": "a"}`, 3, "a", true, false},
		{`{"ts": 4, "event": "a\u0062"}`, 4, "ab", true, false},
		{`{"ts": "4", "event": "a"}`, 0, "", false, false},
		{`{"ts": 4, "event": ""}`, 0, "", false, false},
		{`{"ts": 4}`, 0, "", false, false},
		{`{"event": "a"}`, 0, "", false, false},
		{`{"ts": Infinity, "event": "a"}`, 0, "", false, false},
		{`[1, 2]`, 0, "", false, false},
		{`not json`, 0, "", false, false},
	}
	for _, tt := range tests {
		e, ok := parse([]byte(tt.line))
		if ok != tt.ok || (ok && (e.TS != tt.ts || e.Name != tt.name)) {
			t.Errorf("parse(%s) = %v %q, %v; want %v %q, %v", tt.line, e.TS, e.Name, ok, tt.ts, tt.name, tt.ok)
		}
		if _, _, fast := head([]byte(tt.line)); fast != tt.fast {
			t.Errorf("head(%s) read it: %v, want %v", tt.line, fast, tt.fast)
		}
	}
	e, ok := parse([]byte(`{"ts": 1, "event": "step_done", "step": }`))
	if !ok {
		t.Fatal("a line with a good head is an event")
	}
	if err := e.Decode(&StepDone{}); err == nil {
		t.Error("a line malformed past its head decoded")
	}
	if _, err := e.Fields(); err == nil {
		t.Error("a line malformed past its head has fields")
	}
}
