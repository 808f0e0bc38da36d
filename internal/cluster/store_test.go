package cluster

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperEnv selects a helper mode when this test binary is re-executed as a
// child process (the os/exec tests' pattern): the child does one thing and
// exits without running any test.
const helperEnv = "SRAYBATCH_CLUSTER_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// runHelper runs one helper mode; an unknown one fails loudly, so a test
// cannot silently rely on a helper that does nothing.
func runHelper(mode string) int {
	switch mode {
	case "add-submission":
		n, err := strconv.Atoi(os.Getenv("HELPER_N"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper: bad HELPER_N:", err)
			return 2
		}
		// Every child uses the same timestamp: distinct files must not
		// depend on clocks differing between processes.
		sub := Submission{Role: RoleWorker, JobID: strconv.Itoa(100 + n), Tasks: n, Submitted: helperSubmitted, Script: "/s/worker.sbatch"}
		if err := (Dir{Path: os.Getenv("HELPER_DIR")}).AddSubmission(sub); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(os.Stderr, "helper: unknown mode %q\n", mode)
		return 2
	}
}

var helperSubmitted = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func testSpec(name string) Spec {
	return Spec{
		Name: name, ID: "id-" + name, Backend: BackendSlurm, User: "ana",
		Created: time.Date(2025, 6, 1, 11, 0, 0, 0, time.UTC), Node: NodeSpec{GPUs: 2, Time: "2:00:00"},
		LogDir: "/logs",
	}
}

func mustCreate(t *testing.T, s Store, name string) Dir {
	t.Helper()
	d, err := s.Create(testSpec(name), "module load cuda")
	if err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	return d
}

func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestCreate(t *testing.T) {
	t.Parallel()
	s := Store{Root: filepath.Join(t.TempDir(), "clusters")}
	d := mustCreate(t, s, "exp1")
	if d.Path != filepath.Join(s.Root, "exp1") || d.Name() != "exp1" {
		t.Errorf("Create returned %q", d.Path)
	}
	if got := perm(t, d.Path); got != 0o700 {
		t.Errorf("cluster dir mode = %v, want 0700", got)
	}
	for _, sub := range []string{"submissions", "nodes", "scripts", "bin"} {
		if got := perm(t, filepath.Join(d.Path, sub)); got != 0o700 {
			t.Errorf("%s mode = %v, want 0700", sub, got)
		}
	}
	for _, f := range []string{d.TokenPath(), d.SetupPath(), filepath.Join(d.Path, "spec.json")} {
		if got := perm(t, f); got != 0o600 {
			t.Errorf("%s mode = %v, want 0600", filepath.Base(f), got)
		}
	}
	spec, err := d.Spec()
	if err != nil {
		t.Fatal(err)
	}
	want := testSpec("exp1")
	want.SchemaVersion = SchemaVersion
	if spec.Name != want.Name || spec.ID != want.ID || !spec.Created.Equal(want.Created) ||
		spec.Node.GPUs != 2 || spec.SchemaVersion != SchemaVersion {
		t.Errorf("spec read back = %+v, want %+v", spec, want)
	}
	setup, err := os.ReadFile(d.SetupPath())
	if err != nil || string(setup) != "module load cuda\n" {
		t.Errorf("setup = %q, %v", setup, err)
	}
	// Nothing but the cluster is left in the root: no half-built temp dir.
	entries, err := os.ReadDir(s.Root)
	if err != nil || len(entries) != 1 || entries[0].Name() != "exp1" {
		t.Errorf("root holds %v, %v; want only exp1", entries, err)
	}
}

func readToken(t *testing.T, d Dir) string {
	t.Helper()
	b, err := os.ReadFile(d.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := strings.CutSuffix(string(b), "\n")
	if !ok {
		t.Errorf("token file %q does not end in a newline", b)
	}
	return tok
}

func TestCreateTokens(t *testing.T) {
	t.Parallel()
	s := Store{Root: t.TempDir()}
	a := readToken(t, mustCreate(t, s, "a"))
	b := readToken(t, mustCreate(t, s, "b"))
	for _, tok := range []string{a, b} {
		if _, err := hex.DecodeString(tok); err != nil || len(tok) != 64 || strings.ToLower(tok) != tok {
			t.Errorf("token %q: want 64 lowercase hex characters", tok)
		}
	}
	if a == b {
		t.Errorf("two clusters got the same token %q", a)
	}
}

func TestCreateExistingFailsAndKeepsTheFirst(t *testing.T) {
	t.Parallel()
	s := Store{Root: t.TempDir()}
	d := mustCreate(t, s, "exp1")
	if err := d.AddSubmission(Submission{Role: RoleHead, JobID: "7", Submitted: helperSubmitted}); err != nil {
		t.Fatal(err)
	}
	before := snapshotTree(t, s.Root)

	second := testSpec("exp1")
	second.ID = "other"
	_, err := s.Create(second, "other setup")
	if err == nil || !strings.Contains(err.Error(), `cluster "exp1" already exists`) {
		t.Fatalf("second Create: err = %v, want one saying exp1 exists", err)
	}
	if after := snapshotTree(t, s.Root); !mapsEqual(before, after) {
		t.Errorf("failed Create changed the store:\nbefore %v\nafter  %v", keys(before), keys(after))
	}
}

func TestCreateRejectsBadName(t *testing.T) {
	t.Parallel()
	s := Store{Root: t.TempDir()}
	for _, name := range []string{"", "Exp1", "-x", "a_b", "a/b", "..", strings.Repeat("a", 41)} {
		if _, err := s.Create(testSpec(name), ""); err == nil {
			t.Errorf("Create(%q) succeeded, want an invalid-name error", name)
		}
	}
	if entries, _ := os.ReadDir(s.Root); len(entries) != 0 {
		t.Errorf("rejected names left %v behind", entries)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	s := Store{Root: t.TempDir()}
	mustCreate(t, s, "exp1")
	if d, err := s.Open("exp1"); err != nil || d.Name() != "exp1" {
		t.Errorf("Open(exp1) = %v, %v", d, err)
	}
	_, err := s.Open("nope")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(missing) = %v, want an error wrapping ErrNotFound", err)
	}
	if err != nil && (!strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), s.Root)) {
		t.Errorf("Open(missing) error %q should name the cluster and the store", err)
	}
	// A directory without a spec is not a cluster.
	if err := os.Mkdir(filepath.Join(s.Root, "half"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("half"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(dir without spec) = %v, want ErrNotFound", err)
	}
	if _, err := s.Open("../etc"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Open(../etc) = %v, want an invalid-name error", err)
	}
}

// snapshotTree maps every file under root to its contents.
func snapshotTree(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			files[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(path)
		files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestCorruptStateFile(t *testing.T) {
	t.Parallel()
	type corruptCase struct {
		file string // relative to the cluster dir
		read func(d Dir) error
	}
	cases := map[string]corruptCase{
		"spec":       {"spec.json", func(d Dir) error { _, err := d.Spec(); return err }},
		"head":       {"head.json", func(d Dir) error { _, _, err := d.Head(); return err }},
		"membership": {"membership.json", func(d Dir) error { _, err := d.Membership(); return err }},
		"down":       {"down.json", func(d Dir) error { _, _, err := d.Down(); return err }},
		"node":       {"nodes/7.json", func(d Dir) error { _, err := d.Nodes(); return err }},
		"one node":   {"nodes/7.json", func(d Dir) error { _, _, err := d.Node("7"); return err }},
		"submission": {"submissions/head-1-abcd.json", func(d Dir) error { _, err := d.Submissions(); return err }},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := Store{Root: t.TempDir()}
			d := mustCreate(t, s, "exp1")
			if err := d.WriteHead(HeadInfo{Job: "6", Address: "10.0.0.1:20000"}); err != nil {
				t.Fatal(err)
			}
			if err := d.WriteNode(NodeRecord{Job: "6", Role: RoleHead, Phase: PhaseRunning}); err != nil {
				t.Fatal(err)
			}
			// A write cut short, as a full disk or a crash without rename would leave.
			path := filepath.Join(d.Path, tc.file)
			if err := os.WriteFile(path, []byte(`{"schema_version": 1, "job": "7", "pha`), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshotTree(t, s.Root)

			err := tc.read(d)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("read of truncated %s: err = %v (%T), want *CorruptError", tc.file, err, err)
			}
			if ce.Path != path {
				t.Errorf("CorruptError.Path = %q, want %q", ce.Path, path)
			}
			msg := err.Error()
			for _, want := range []string{path, "corrupt", "move it aside"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q spans lines", msg)
			}
			if errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a corrupt file reads as missing: %v", err)
			}
			if after := snapshotTree(t, s.Root); !mapsEqual(before, after) {
				t.Errorf("reading a corrupt file changed the store")
			}
		})
	}
}

func TestNewerSchemaVersionIsRefused(t *testing.T) {
	t.Parallel()
	s := Store{Root: t.TempDir()}
	d := mustCreate(t, s, "exp1")
	path := filepath.Join(d.Path, "head.json")
	body := fmt.Sprintf(`{"schema_version": %d, "job": "6", "address": "10.0.0.1:1", "some_new_field": [1]}`, SchemaVersion+1)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, ok, err := d.Head()
	if err == nil || ok {
		t.Fatalf("Head() of a newer schema = ok %v, err %v; want an error", ok, err)
	}
	var ce *CorruptError
	if errors.As(err, &ce) {
		t.Errorf("newer schema reported as corrupt: %v", err)
	}
	for _, want := range []string{path, "newer", strconv.Itoa(SchemaVersion + 1), "use the newer sraybatch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "exp1")

	if _, ok, err := d.Head(); ok || err != nil {
		t.Errorf("Head() before publishing = %v, %v; want not ok, nil", ok, err)
	}
	if _, ok, err := d.Down(); ok || err != nil {
		t.Errorf("Down() before down = %v, %v; want not ok, nil", ok, err)
	}
	if _, ok, err := d.Node("7"); ok || err != nil {
		t.Errorf("Node(7) before it wrote = %v, %v; want not ok, nil", ok, err)
	}
	m, err := d.Membership()
	if err != nil || m.Nodes == nil || len(m.Nodes) != 0 || !m.Updated.IsZero() {
		t.Errorf("Membership() before any = %+v, %v; want empty with a non-nil map", m, err)
	}

	start := time.Now().UTC()
	if err := d.WriteNode(NodeRecord{Job: "7_1", Role: RoleWorker, Phase: PhaseFailed, Reason: "no GPUs"}); err != nil {
		t.Fatal(err)
	}
	r, ok, err := d.Node("7_1")
	if err != nil || !ok || r.Phase != PhaseFailed || r.Reason != "no GPUs" || r.SchemaVersion != SchemaVersion || r.Updated.Before(start) {
		t.Errorf("Node(7_1) = %+v, %v, %v", r, ok, err)
	}
	recs, err := d.Nodes()
	if err != nil || len(recs) != 1 || recs["7_1"].Reason != "no GPUs" {
		t.Errorf("Nodes() = %v, %v", recs, err)
	}

	if err := d.MarkDown(start); err != nil {
		t.Fatal(err)
	}
	if dr, ok, err := d.Down(); !ok || err != nil || !dr.Requested.Equal(start) {
		t.Errorf("Down() = %+v, %v, %v", dr, ok, err)
	}

	snap := MembershipSnapshot{Updated: start, Nodes: map[string]*MemberNode{"7_1": {NodeID: "abc", Alive: true, GPUs: 2}}}
	if err := d.WriteMembership(snap); err != nil {
		t.Fatal(err)
	}
	if m, err := d.Membership(); err != nil || m.Nodes["7_1"] == nil || m.Nodes["7_1"].NodeID != "abc" || !m.Nodes["7_1"].Alive {
		t.Errorf("Membership() = %+v, %v", m, err)
	}
}

func TestSubmissionsOldestFirst(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "exp1")
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range []Submission{
		{Role: RoleWorker, JobID: "9", Tasks: 2, Submitted: base.Add(2 * time.Minute)},
		{Role: RoleHead, JobID: "7", Submitted: base},
		{Role: RoleWorker, JobID: "8", Submitted: base.Add(time.Minute)},
	} {
		if err := d.AddSubmission(s); err != nil {
			t.Fatal(err)
		}
	}
	// A writer's temp file in progress is not a submission.
	if err := os.WriteFile(filepath.Join(d.Path, "submissions", ".worker-1.json.tmp-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	subs, err := d.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range subs {
		ids = append(ids, s.JobID)
		if s.SchemaVersion != SchemaVersion {
			t.Errorf("submission %s schema_version = %d", s.JobID, s.SchemaVersion)
		}
	}
	if !slices.Equal(ids, []string{"7", "8", "9"}) {
		t.Errorf("submission order = %v, want 7 8 9", ids)
	}
	if subs[2].Tasks != 2 || !slices.Equal(subs[2].JobKeys(), []string{"9_0", "9_1"}) {
		t.Errorf("array submission = %+v, keys %v", subs[2], subs[2].JobKeys())
	}
	if keys := subs[0].JobKeys(); !slices.Equal(keys, []string{"7"}) {
		t.Errorf("plain submission keys = %v, want [7]", keys)
	}
}

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var tmp []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			tmp = append(tmp, e.Name())
		}
	}
	return tmp
}

func TestWriteFileAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for i, mode := range []fs.FileMode{0o600, 0o640, 0o700} {
		data := []byte(fmt.Sprintf("version %d\n", i))
		if err := WriteFileAtomic(path, data, mode); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("read back %q, %v; want %q", got, err, data)
		}
		if p := perm(t, path); p != mode {
			t.Errorf("mode = %v, want %v", p, mode)
		}
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left behind: %v", tmp)
	}

	// A write that cannot complete leaves neither a temp file nor a change.
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(filepath.Join(dir, "sub"), []byte("x"), 0o600) // rename over a directory
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "sub")) {
		t.Errorf("WriteFileAtomic over a directory: err = %v, want one naming the path", err)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("failed write left temp files: %v", tmp)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
}

// WriteFileSyncLater's file is in place, whole and with its mode before
// its sync runs; a write that cannot complete leaves nothing behind.
func TestWriteFileSyncLater(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "worker.sbatch")
	for i, mode := range []fs.FileMode{0o600, 0o700} {
		data := []byte(fmt.Sprintf("#!/bin/bash\n# version %d\n", i))
		sync, err := WriteFileSyncLater(path, data, mode)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("read back before sync %q, %v; want %q", got, err, data)
		}
		if p := perm(t, path); p != mode {
			t.Errorf("mode = %v, want %v", p, mode)
		}
		if err := sync(); err != nil {
			t.Errorf("sync: %v", err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFileSyncLater(filepath.Join(dir, "sub"), []byte("x"), 0o600); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "sub")) {
		t.Errorf("WriteFileSyncLater over a directory: err = %v, want one naming the path", err)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left behind: %v", tmp)
	}
}

// Readers racing one writer see the old or the new file, never a torn or
// empty one, and the writer leaves no temp files.
func TestWriteFileAtomicReadersNeverSeeTornFile(t *testing.T) {
	t.Parallel()
	dir := memTempDir(t)
	path := filepath.Join(dir, "membership.json")
	// Different sizes and fill bytes, so a torn read cannot pass for either.
	versions := [][]byte{bytes.Repeat([]byte("a"), 8<<10), bytes.Repeat([]byte("b"), 24<<10)}
	if err := WriteFileAtomic(path, versions[0], 0o600); err != nil {
		t.Fatal(err)
	}
	const iterations = 2000
	done := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := 1; i <= iterations; i++ {
			if err := WriteFileAtomic(path, versions[i%2], 0o600); err != nil {
				writeErr = err
				return
			}
		}
	}()
	const readers = 2
	bad := make([]string, readers)
	reads := make([]int, readers)
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := os.ReadFile(path)
				reads[r]++
				if err != nil {
					bad[r] = err.Error()
					return
				}
				if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
					bad[r] = fmt.Sprintf("torn read: %d bytes", len(got))
					return
				}
			}
		}()
	}
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	for r, b := range bad {
		if b != "" {
			t.Errorf("reader %d: %s", r, b)
		}
	}
	if reads[0] == 0 {
		t.Error("reader never ran")
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left behind: %v", tmp)
	}
}

// memTempDir is a temporary directory on tmpfs where there is one: rename
// atomicity is the VFS's either way, and there 2000 fsyncs cost nothing.
func memTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "sraybatch-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Separate processes (as concurrent `grow`s on different login nodes would
// be) add submissions to one directory without any lock: none is lost.
func TestAddSubmissionFromManyProcesses(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("cannot re-execute the test binary: %v", err)
	}
	d := mustCreate(t, Store{Root: t.TempDir()}, "exp1")
	const procs = 20
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*bytes.Buffer, procs)
	for i := range cmds {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=add-submission", "HELPER_DIR="+d.Path, "HELPER_N="+strconv.Itoa(i))
		outs[i] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		cmds[i] = cmd
	}
	// Start them all before waiting for any, so their writes overlap.
	for i, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			t.Fatalf("start helper %d: %v", i, err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v\n%s", i, err, outs[i])
		}
	}

	entries, err := os.ReadDir(filepath.Join(d.Path, "submissions"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != procs {
		t.Errorf("submissions dir holds %d files, want %d: %v", len(names), procs, names)
	}
	subs, err := d.Submissions()
	if err != nil {
		t.Fatalf("Submissions() = %v", err)
	}
	seen := map[string]bool{}
	for _, s := range subs {
		if s.Role != RoleWorker || !s.Submitted.Equal(helperSubmitted) || s.SchemaVersion != SchemaVersion {
			t.Errorf("submission parsed wrong: %+v", s)
		}
		seen[s.JobID] = true
	}
	for i := range procs {
		if id := strconv.Itoa(100 + i); !seen[id] {
			t.Errorf("submission of job %s is missing", id)
		}
	}
}

func TestHelperUnknownModeFails(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("cannot re-execute the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=no-such-mode")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "unknown mode") {
		t.Errorf("unknown helper mode: err %v, output %q; want exit 2 naming the mode", err, out)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	s := Store{Root: t.TempDir()}
	if names, err := (Store{Root: filepath.Join(s.Root, "missing")}).Names(); err != nil || names != nil {
		t.Errorf("Names() of a missing root = %v, %v; want nil, nil", names, err)
	}
	mustCreate(t, s, "zeta")
	mustCreate(t, s, "alpha")
	mustCreate(t, s, "m-1")
	// Things that are not clusters: a bad name holding a spec, a directory
	// without a spec, Create's temp dir, and a plain file.
	for _, dir := range []string{"Bad_Name", "nospec", ".new-x-123"} {
		if err := os.Mkdir(filepath.Join(s.Root, dir), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"Bad_Name/spec.json", ".new-x-123/spec.json", "file"} {
		if err := os.WriteFile(filepath.Join(s.Root, f), []byte(`{"schema_version":1}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	names, err := s.Names()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alpha", "m-1", "zeta"}; !slices.Equal(names, want) {
		t.Errorf("Names() = %v, want %v", names, want)
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"a": true, "exp1": true, "0x": true, "a-b-c": true, strings.Repeat("a", 40): true,
		"": false, "-a": false, "A": false, "a_b": false, "a.b": false, "a b": false,
		"a\n": false, strings.Repeat("a", 41): false, "é": false,
	} {
		err := ValidateName(name)
		if (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok %v", name, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "a-z, 0-9") {
			t.Errorf("ValidateName(%q) error %q does not say what is allowed", name, err)
		}
	}
}

// A spec.json written by the landed version (durations in seconds, under
// the same keys) reads back as the same durations.
func TestAutoscaleDurationsFromSeconds(t *testing.T) {
	t.Parallel()
	var spec Spec
	landed := `{"drain_before_s": 90, "autoscale": {"enabled": true, "max_workers": 2, "idle_timeout_s": 600, "upscale_delay_s": 2.5, "poll_interval_s": 0.5}}`
	if err := json.Unmarshal([]byte(landed), &spec); err != nil {
		t.Fatal(err)
	}
	a := spec.Autoscale
	if a.IdleTimeout() != 10*time.Minute || a.UpscaleDelay() != 2500*time.Millisecond || a.PollInterval() != 500*time.Millisecond || spec.DrainBefore() != 90*time.Second {
		t.Errorf("durations: idle %s, upscale %s, poll %s, drain before %s", a.IdleTimeout(), a.UpscaleDelay(), a.PollInterval(), spec.DrainBefore())
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"idle_timeout_s":600`, `"upscale_delay_s":2.5`, `"poll_interval_s":0.5`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("written back as %s: lacks %s", b, key)
		}
	}
}
