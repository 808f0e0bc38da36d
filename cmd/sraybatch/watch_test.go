package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/testci"
)

func TestClusterOver(t *testing.T) {
	t.Parallel()
	job := func(slurm string, outcome cluster.Outcome) cluster.JobStatus {
		return cluster.JobStatus{SlurmState: slurm, Outcome: outcome}
	}
	tests := []struct {
		name  string
		state cluster.State
		jobs  []cluster.JobStatus
		want  bool
	}{
		{"nothing submitted yet", cluster.StatePending, nil, false},
		{"taken down before any job", cluster.StateEnded, nil, true},
		{"a job still queued", cluster.StateRunning, []cluster.JobStatus{job("COMPLETED", ""), job("PENDING", "")}, false},
		{"down asked, a job still completing", cluster.StateEnded, []cluster.JobStatus{job("COMPLETING", cluster.OutcomeCancelled)}, false},
		{"every job ended or forgotten by SLURM", cluster.StateEnded, []cluster.JobStatus{job("CANCELLED", ""), job(cluster.SlurmGone, "")}, true},
		{"the record said it ended, SLURM still runs it", cluster.StateFailed, []cluster.JobStatus{job("RUNNING", cluster.OutcomeFailed)}, false},
		{"SLURM did not answer: the records decide", cluster.StateFailed, []cluster.JobStatus{job("", cluster.OutcomeHeadLost), job("", cluster.OutcomeCompleted)}, true},
		{"SLURM did not answer, a job without its end", cluster.StateRunning, []cluster.JobStatus{job("", "")}, false},
	}
	for _, tt := range tests {
		st := cluster.Status{Cluster: cluster.ClusterStatus{State: tt.state}, Jobs: tt.jobs}
		if got := clusterOver(st); got != tt.want {
			t.Errorf("%s: clusterOver = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// followEvery ticks at once, then once per interval of its clock, and ends
// when the tick says so, when it fails, or on Ctrl+C.
func TestFollowEvery(t *testing.T) {
	t.Parallel()
	clk := clocktest.New(time.Unix(0, 0))
	a := &app{clock: clk}
	var ticks []time.Time
	done := make(chan error, 1)
	go func() {
		done <- a.followEvery(context.Background(), 3*time.Second, func() (bool, error) {
			ticks = append(ticks, clk.Now())
			return len(ticks) == 3, nil
		})
	}()
	for n := 0; n < 2; n++ {
		clk.WaitAfterCalls(n)
		clk.Advance(time.Second) // not yet
		clk.Advance(2 * time.Second)
	}
	if err := <-done; err != nil || len(ticks) != 3 || ticks[1].Sub(ticks[0]) != 3*time.Second || ticks[2].Sub(ticks[1]) != 3*time.Second {
		t.Fatalf("followEvery = %v after ticks %v; want 3 ticks 3 s apart", err, ticks)
	}

	boom := errors.New("boom")
	if err := a.followEvery(context.Background(), time.Second, func() (bool, error) { return false, boom }); err != boom {
		t.Errorf("a failing tick: %v, want its error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.followEvery(ctx, time.Second, func() (bool, error) { return false, nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Ctrl+C: %v, want context.Canceled", err)
	}
}

// expectEndedJobs is the squeue of runningCluster once down has ended it.
func expectEndedJobs(f *uFixture, spec cluster.Spec) {
	f.expectClusterJobs(spec,
		squeueLine("41", "sray-exp1-head", "CANCELLED", "None", "gpu01", "1:00:10", "0:00", "2:00:00"),
		squeueLine("42_0", "sray-exp1-worker", "CANCELLED", "None", "gpu02", "30:10", "0:00", "1:00:00"),
		squeueLine("42_1", "sray-exp1-worker", "CANCELLED", "None", "", "0:00", "0:00", "1:00:00"),
	)
}

// syncBuffer is a stream the command writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// watchTwoTicks runs status --watch over a running cluster that has ended
// by the second tick, and returns the command's error.
func watchTwoTicks(t *testing.T, io IOStreams, o statusOptions, between func()) error {
	t.Helper()
	f := newUFixture(t)
	spec := runningCluster(t, f)
	expectRunningJobs(f, spec)
	expectEndedJobs(f, spec)
	clk := clocktest.New(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	f.app.clock = clk
	done := make(chan error, 1)
	go func() { done <- runStatusWatch(context.Background(), io, f.app, o) }()
	clk.WaitAfterCalls(0)
	if between != nil {
		between()
	}
	clk.Advance(o.Interval)
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("status --watch did not end with its cluster")
	}
	return nil
}

func TestStatusWatchPipedAppendsTicks(t *testing.T) {
	t.Parallel()
	var out, errOut syncBuffer
	var first string
	err := watchTwoTicks(t, IOStreams{Out: &out, ErrOut: &errOut}, statusOptions{Cluster: "exp1", Watch: true, Interval: 2 * time.Second},
		func() { first = out.String() })
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if !strings.HasPrefix(out.String(), first) || len(lines) != 7 {
		t.Fatalf("want the header and 3 rows per tick appended, got:\n%s", out.String())
	}
	if !strings.HasPrefix(lines[0], "TIME\tCLUSTER\tSTATE\tROLE\tJOB\t") {
		t.Errorf("header %q", lines[0])
	}
	for i, l := range lines[1:] {
		tick, ended := "2026-11-29T12:00:00Z", false
		if i >= 3 {
			tick, ended = "2026-11-29T12:00:02Z", true
		}
		if cols := strings.Split(l, "\t"); cols[0] != tick || (cols[5] == "CANCELLED") != ended {
			t.Errorf("row %d %q: want time %s, cancelled %v", i+1, l, tick, ended)
		}
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Errorf("piped output has escape sequences: %q", out.String())
	}
	if !strings.Contains(errOut.String(), "cluster exp1 has ended") {
		t.Errorf("stderr %q, want the end said", errOut.String())
	}
}

func TestStatusWatchJSONLines(t *testing.T) {
	t.Parallel()
	var out, errOut syncBuffer
	err := watchTwoTicks(t, IOStreams{Out: &out, ErrOut: &errOut}, statusOptions{Cluster: "exp1", Watch: true, Interval: time.Second, Output: "json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one JSON object per tick, got:\n%s", out.String())
	}
	for i, l := range lines {
		var doc struct {
			Time    time.Time             `json:"time"`
			Cluster cluster.ClusterStatus `json:"cluster"`
			Jobs    []cluster.JobStatus   `json:"jobs"`
		}
		if err := json.Unmarshal([]byte(l), &doc); err != nil || doc.Cluster.Name != "exp1" || len(doc.Jobs) != 3 || doc.Time.IsZero() {
			t.Errorf("tick %d: %v %+v", i, err, doc)
		}
	}
}

// On a terminal each frame replaces the last: the first clears the screen,
// later ones go home, erase each line's rest and everything below.
func TestStatusWatchRedrawsOnATerminal(t *testing.T) {
	t.Parallel()
	ptmx, tty, err := pty.Open()
	if err != nil {
		testci.SkipOutsideCI(t, "no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	read := make(chan string, 1)
	go func() {
		var all bytes.Buffer
		buf := make([]byte, 64<<10)
		for {
			n, err := ptmx.Read(buf)
			all.Write(buf[:n])
			if err != nil || strings.Contains(all.String(), "the cluster has ended") && strings.HasSuffix(all.String(), ansiEraseDown) {
				read <- all.String()
				return
			}
		}
	}()
	var errOut syncBuffer
	io := IOStreams{Out: tty, ErrOut: &errOut, OutIsTTY: isTerminal(tty), Color: true}
	if !io.OutIsTTY {
		t.Fatal("the pty's terminal side is no terminal")
	}
	if err := watchTwoTicks(t, io, statusOptions{Cluster: "exp1", Watch: true, Interval: 2 * time.Second}, nil); err != nil {
		t.Fatal(err)
	}
	var screen string
	select {
	case screen = <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("no frames on the terminal")
	}
	frames := strings.Split(screen, ansiHome)
	// ansiClear starts with ansiHome: "", the first frame (after the clear), the second.
	if len(frames) != 3 || frames[0] != "" || !strings.HasPrefix(frames[1], "\x1b[2J") {
		t.Fatalf("want a cleared first frame and one redraw, got %q", screen)
	}
	for i, f := range frames[1:] {
		if !strings.HasSuffix(f, ansiEraseDown) || !strings.Contains(f, "┌") {
			t.Errorf("frame %d is not a whole table ending in erase-below: %q", i+1, f)
		}
		lines := strings.Split(strings.TrimSuffix(f, ansiEraseDown), "\r\n")
		for _, l := range lines[:len(lines)-1] {
			if !strings.HasSuffix(l, ansiEraseLine) {
				t.Errorf("frame %d line %q does not erase the old line's rest", i+1, l)
			}
		}
	}
	if !strings.Contains(frames[1], "RUNNING") || !strings.Contains(frames[2], "CANCELLED") || strings.Contains(frames[2], "RUNNING") {
		t.Errorf("frames do not follow the cluster: %q", frames[1:])
	}
	if !strings.Contains(frames[1], "\x1b[32mjoined") {
		t.Errorf("a terminal's frame is not coloured: %q", frames[1])
	}
}

func TestStatusWatchBadInput(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	f.createCluster(t, "exp1", "41")
	for _, o := range []statusOptions{
		{All: true, Watch: true, Interval: time.Second},
		{Cluster: "exp1", Watch: true},
		{Cluster: "exp1", Watch: true, Interval: time.Second, GPUs: true, Output: "tsv"},
	} {
		var s uStreams
		err := runStatusWatch(context.Background(), s.io(false), f.app, o)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%+v: %v, want a usage error", o, err)
		}
	}
}

// Ctrl+C ends the watch with exit 130 and says what keeps running.
func TestStatusWatchInterrupted(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := runningCluster(t, f)
	expectRunningJobs(f, spec)
	ctx, cancel := context.WithCancel(context.Background())
	clk := clocktest.New(time.Now())
	f.app.clock = clk
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runStatusWatch(ctx, IOStreams{Out: &out, ErrOut: &errOut}, f.app, statusOptions{Cluster: "exp1", Watch: true, Interval: time.Second})
	}()
	clk.WaitAfterCalls(0)
	cancel()
	err := <-done
	var ie interruptedError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "cluster exp1 keeps running") {
		t.Fatalf("Ctrl+C: %v, want an interruptedError saying the cluster keeps running", err)
	}
	if code := exitCode(IOStreams{Out: &out, ErrOut: &errOut}, "status", err); code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
}

// Tables asked for on a pipe are appended, each frame after its time line.
func TestStatusWatchTablesAppendedWhenPiped(t *testing.T) {
	t.Parallel()
	var out, errOut syncBuffer
	err := watchTwoTicks(t, IOStreams{Out: &out, ErrOut: &errOut}, statusOptions{Cluster: "exp1", Watch: true, Interval: time.Second, Output: "table"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	frames := strings.Split(out.String(), "\n\n")
	if len(frames) != 2 || strings.Contains(out.String(), "\x1b") {
		t.Fatalf("want two frames without escape sequences, got %q", out.String())
	}
	for i, want := range []string{"12:00:00  sraybatch status --watch (every 1s, Ctrl+C to stop)", "12:00:01  sraybatch status --watch (the cluster has ended)"} {
		if !strings.HasPrefix(frames[i], want+"\n") || !strings.Contains(frames[i], "┌") {
			t.Errorf("frame %d:\n%s\nwant it to start with %q and hold the table", i, frames[i], want)
		}
	}
}
