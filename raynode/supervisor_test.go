package raynode

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestJobKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SLURM_JOB_ID": "8"}, "8"},
		// An array task's own SLURM_JOB_ID differs from the array id: the key uses the array form.
		{map[string]string{"SLURM_JOB_ID": "12", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "3"}, "7_3"},
		{map[string]string{"SLURM_JOB_ID": "12", "SLURM_ARRAY_JOB_ID": "7"}, "12"},
		{map[string]string{"SLURM_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3"}, "12"},
		{map[string]string{}, ""},
	}
	for _, tt := range tests {
		if got := JobKey(envFunc(tt.env)); got != tt.want {
			t.Errorf("JobKey(%v) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"empty", 10, nil, ""},
		{"lines", 10, []string{"a\nb\n"}, "a | b"},
		{"partial last line kept", 10, []string{"a\nb\npart"}, "a | b | part"},
		{"line split over writes", 10, []string{"hel", "lo\nwor", "ld\n"}, "hello | world"},
		{"blank lines dropped", 10, []string{"a\n\n   \nb\n"}, "a | b"},
		{"only the last five shown", 10, []string{"1\n2\n3\n4\n5\n6\n7\n"}, "3 | 4 | 5 | 6 | 7"},
		{"max lines kept", 2, []string{"1\n2\n3\n"}, "2 | 3"},
		{"whitespace squeezed", 10, []string{"Error:\tport  20000 in use\r\n"}, "Error: port 20000 in use"},
	}
	for _, tt := range tests {
		tb := newTailBuffer(tt.max)
		for _, w := range tt.writes {
			if n, err := tb.Write([]byte(w)); n != len(w) || err != nil {
				t.Errorf("%s: Write = %d, %v", tt.name, n, err)
			}
		}
		if got := tb.String(); got != tt.want {
			t.Errorf("%s: String() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestTailBufferStringDoesNotChangeIt(t *testing.T) {
	t.Parallel()
	tb := newTailBuffer(3)
	fmt.Fprint(tb, "a\nb\npart")
	_ = tb.String()
	fmt.Fprint(tb, "ial\nc\n")
	if got := tb.String(); got != "b | partial | c" {
		t.Errorf("String() = %q, want %q", got, "b | partial | c")
	}
}

func TestTailBufferConcurrentWrites(t *testing.T) {
	t.Parallel()
	tb := newTailBuffer(40)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				fmt.Fprintf(tb, "writer %d line %d\n", g, i)
				_ = tb.String()
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(tb.String(), "writer"); got != 5 {
		t.Errorf("String() holds %d lines, want 5: %q", got, tb.String())
	}
}

func TestCopyLogTails(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	dst := filepath.Join(t.TempDir(), "ray-7")
	content := map[string]string{
		"a.log": strings.Repeat("a", 2000) + "END-A",
		"b.out": strings.Repeat("b", 2000) + "END-B",
		"c.err": strings.Repeat("c", 2000) + "END-C",
		"d.log": "small",
	}
	for name, c := range content {
		if err := os.WriteFile(filepath.Join(src, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "events"), 0o755); err != nil { // directories are skipped
		t.Fatal(err)
	}

	const perFile, total = 1000, 2500
	if err := copyLogTails(src, dst, perFile, total); err != nil {
		t.Fatal(err)
	}
	// Files go in name order: a and b get perFile each, c the rest, d nothing.
	want := map[string]string{
		"a.log": content["a.log"][len(content["a.log"])-1000:],
		"b.out": content["b.out"][len(content["b.out"])-1000:],
		"c.err": content["c.err"][len(content["c.err"])-500:],
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	var copied int
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		copied += len(b)
		if w, ok := want[e.Name()]; !ok || string(b) != w {
			t.Errorf("%s: copied %d bytes ending %q; want %d bytes", e.Name(), len(b), tail(string(b)), len(w))
		}
		if e.IsDir() {
			t.Errorf("directory %s copied", e.Name())
		}
	}
	if copied > total || len(entries) != len(want) {
		t.Errorf("copied %d bytes in %d files, want at most %d in %d", copied, len(entries), total, len(want))
	}
	if st, err := os.Stat(dst); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o700 {
		t.Errorf("log dir mode = %v, want 0700", st.Mode().Perm())
	}

	if err := copyLogTails(filepath.Join(src, "missing"), dst, perFile, total); err == nil {
		t.Error("copyLogTails of a missing directory succeeded")
	}
}

func tail(s string) string {
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

func TestCopyLogTailsSmallFilesWhole(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "raylet.out"), []byte("started\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := copyLogTails(src, dst, 1<<20, 64<<20); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "raylet.out")); err != nil || string(b) != "started\n" {
		t.Errorf("copied %q, %v", b, err)
	}
}

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}
