package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// A follower reads each whole line once: a torn last line is neither
// returned nor counted, and comes whole with the next read.
func TestReadEventsFromResumes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cluster.jsonl")
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	if evs, off, err := ReadEventsFrom(path, 0); err != nil || evs != nil || off != 0 {
		t.Fatalf("missing file: %v, %d, %v; want nothing at offset 0", evs, off, err)
	}
	first := `{"ts": 1, "event": "a"}` + "\n"
	write(first + "garbage\n" + `{"ts": 2, "event": "b"`)
	evs, off, err := ReadEventsFrom(path, 0)
	if err != nil || len(evs) != 1 || evs[0].Name != "a" {
		t.Fatalf("first read: %v, %v; want event a", evs, err)
	}
	if want := int64(len(first) + len("garbage\n")); off != want {
		t.Fatalf("offset after the first read = %d, want %d (whole lines only)", off, want)
	}
	write("}\n" + `{"ts": 3, "event": "c"}` + "\n")
	evs, off2, err := ReadEventsFrom(path, off)
	if err != nil || len(evs) != 2 || evs[0].Name != "b" || evs[1].Name != "c" {
		t.Fatalf("second read: %v, %v; want b and c", evs, err)
	}
	if st, _ := os.Stat(path); off2 != st.Size() {
		t.Errorf("offset %d, want the file's size %d", off2, st.Size())
	}
	if evs, off3, err := ReadEventsFrom(path, off2); err != nil || len(evs) != 0 || off3 != off2 {
		t.Errorf("nothing new: %v, %d, %v", evs, off3, err)
	}
}
