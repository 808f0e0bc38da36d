//go:build e2e

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/raynode"
)

// viewer is a sraybatch command that runs until it ends by itself (a
// follower), its stdout a pseudo-terminal or a pipe.
type viewer struct {
	name        string
	out, errOut syncBuffer
	done        chan struct{}
	code        int
}

// startViewer runs the CLI with stdout on a fresh pseudo-terminal (tty) or
// a pipe, collecting what it prints.
func (e e2eEnv) startViewer(t *testing.T, tty bool, args ...string) *viewer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	cmd := e.cmd(ctx, args...)
	v := &viewer{name: strings.Join(args, " "), done: make(chan struct{})}
	if tty {
		v.name += " (terminal)"
	} else {
		v.name += " (pipe)"
	}
	cmd.Stderr = &v.errOut
	var reader io.Reader
	if tty {
		// The test user's credentials stay; the terminal becomes the
		// command's controlling terminal, as in a login shell.
		attrs := &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if cmd.SysProcAttr != nil {
			attrs.Credential = cmd.SysProcAttr.Credential
		}
		ptmx, err := pty.StartWithAttrs(cmd, &pty.Winsize{Rows: 60, Cols: 200}, attrs)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", v.name, err)
		}
		reader = ptmx
		t.Cleanup(func() { ptmx.Close() })
	} else {
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("%s: %v", v.name, err)
		}
		reader = pipe
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(&v.out, reader) // a terminal ends in EIO once the command has exited
		close(copied)
	}()
	go func() {
		defer cancel()
		err := cmd.Wait()
		<-copied
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			v.code = ee.ExitCode()
		case err != nil:
			v.code = -1
		}
		close(v.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-v.done
	})
	return v
}

// ended waits until the viewer has exited by itself, and returns its exit
// status; it fails the test when it is still running after limit.
func (v *viewer) ended(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-v.done:
		t.Logf("$ sraybatch %s  -> exit %d\n%s%s", v.name, v.code, v.out.String(), v.errOut.String())
		return v.code
	case <-time.After(limit):
		t.Fatalf("sraybatch %s still running %s after the cluster ended:\n%s", v.name, limit, v.out.String())
	}
	return 0
}

// TestE2EViews watches a real cluster come up and go down with status
// --watch, events -f and logs -f, each on a terminal and through a pipe,
// reads the head's Ray logs while it runs, and checks that every follower
// ends by itself after down.
func TestE2EViews(t *testing.T) {
	e2eShare(t, 2)
	e := needE2E(t)
	start := time.Now()
	const name = "e2eviews"
	e.mustSray(t, "up", "--name", name, "--workers", "1", "--gpus-per-node", "1", "--time", "10:00",
		"--setup", e.setup, "--object-store-mb", "80")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
	spec, err := dir.Spec()
	if err != nil {
		t.Fatal(err)
	}
	subs, err := dir.Submissions()
	if err != nil || len(subs) != 2 {
		t.Fatalf("submissions %+v, %v; want the head and one worker", subs, err)
	}
	head, worker := subs[0].JobKeys()[0], subs[1].JobKeys()[0]

	var views []*viewer
	watch := func(tty bool, args ...string) *viewer {
		v := e.startViewer(t, tty, append(args, "--cluster", name)...)
		views = append(views, v)
		return v
	}
	watchTTY := watch(true, "status", "--watch", "--interval", "1s")
	watchPipe := watch(false, "status", "--watch", "--interval", "1s")
	eventsTTY := watch(true, "events", "-f")
	eventsPipe := watch(false, "events", "-f")
	logsTTY := watch(true, "logs", head, "-f")
	logsPipe := watch(false, "logs", head, "-f")
	rayTTY := watch(true, "logs", head, "--ray", "-f")
	rayPipe := watch(false, "logs", head, "--ray", "-f")

	waitFor(t, "up until the head and the worker joined", 2*time.Minute, func() bool {
		st := e.status(t, name)
		h, _ := jobByID(st, head)
		w, _ := jobByID(st, worker)
		return h.Ray == cluster.MembershipJoined && w.Ray == cluster.MembershipJoined
	})

	t.Run("logs --ray shows the running head's GCS and raylet", func(t *testing.T) {
		rayDir := raynode.RayLogDir(spec.LogDir, head)
		waitFor(t, "the head's first Ray log copies", 30*time.Second, func() bool {
			for _, f := range []string{"gcs_server.out", "raylet.out"} {
				if st, err := os.Stat(filepath.Join(rayDir, f)); err != nil || st.Size() == 0 {
					return false
				}
			}
			return true
		})
		for _, tty := range []bool{true, false} {
			v := e.startViewer(t, tty, "logs", "--cluster", name, head, "--ray")
			if code := v.ended(t, 30*time.Second); code != 0 {
				t.Fatalf("logs --ray: exit %d: %s", code, v.errOut.String())
			}
			out := v.out.String()
			for _, f := range []string{"gcs_server.out", "raylet.out"} {
				header := "==> head " + head + ": " + filepath.Join(rayDir, f) + " <=="
				i := strings.Index(out, header)
				if i < 0 {
					t.Errorf("%s: no %s section:\n%s", v.name, f, out)
					continue
				}
				if rest := strings.TrimLeft(out[i+len(header):], "\r\n"); strings.HasPrefix(rest, "==>") || rest == "" {
					t.Errorf("%s: %s is empty", v.name, f)
				}
			}
			if !strings.Contains(out, "raylet") && !strings.Contains(out, "Raylet") {
				t.Errorf("%s: no raylet line in:\n%s", v.name, out)
			}
		}
		if st, err := os.Stat(rayDir); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("Ray log folder %v, %v; want 0700", st, err)
		}
	})

	// The head's observer writes job_state events; events -f shows them.
	waitFor(t, "events -f shows the worker joined", 30*time.Second, func() bool {
		return hasEventLine(eventsPipe.out.String(), worker, "job_state", "membership=joined")
	})

	e.mustSray(t, "down", "--cluster", name) // returns once SLURM has ended the jobs
	downAt := time.Now()
	for _, v := range views {
		if code := v.ended(t, 30*time.Second); code != 0 {
			t.Errorf("%s: exit %d after the cluster ended, want 0: %s", v.name, code, v.errOut.String())
		}
	}
	t.Logf("MEASURED every follower ended by itself %.1f s after down returned", time.Since(downAt).Seconds())

	t.Run("status --watch on a terminal redraws in place", func(t *testing.T) {
		out := watchTTY.out.String()
		if !strings.HasPrefix(out, ansiClear) || strings.Count(out, ansiHome) < 3 || !strings.HasSuffix(out, ansiEraseDown) {
			t.Errorf("want a cleared screen, then frames redrawn from home, each ending in erase-below: %q", tail(out, 400))
		}
		frames := strings.Split(out, ansiHome)
		last := frames[len(frames)-1]
		if !strings.Contains(out, "joined") || !strings.Contains(last, "the cluster has ended") || strings.Contains(last, "RUNNING") {
			t.Errorf("the frames do not show the cluster up and then ended; last frame:\n%s", last)
		}
	})
	t.Run("status --watch through a pipe appends rows with their time", func(t *testing.T) {
		out := watchPipe.out.String()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if strings.Contains(out, "\x1b") || !strings.HasPrefix(lines[0], "TIME\tCLUSTER\t") || strings.Count(out, "TIME\t") != 1 {
			t.Fatalf("want one header and plain TSV rows: %q", tail(out, 400))
		}
		ticks := map[string]bool{}
		joined := false
		for _, l := range lines[1:] {
			cols := strings.Split(l, "\t")
			if _, err := time.Parse(time.RFC3339, cols[0]); err != nil || len(cols) != len(strings.Split(lines[0], "\t")) {
				t.Fatalf("row %q: %v", l, err)
			}
			ticks[cols[0]] = true
			joined = joined || cols[9] == string(cluster.MembershipJoined)
		}
		if len(ticks) < 3 || !joined {
			t.Errorf("%d ticks, joined seen %v; want the cluster's life over several ticks", len(ticks), joined)
		}
	})
	t.Run("events -f tells the cluster's life", func(t *testing.T) {
		pipe := eventsPipe.out.String()
		for _, want := range [][]string{
			{head, "submitted"}, {worker, "submitted"}, {head, "job_started"}, {head, "head_up"},
			{head, "job_state", "membership=joined"}, {worker, "job_state", "membership=joined"},
			{"-", "down_requested"}, {head, "job_ended"},
		} {
			if !hasEventLine(pipe, want[0], want[1], want[2:]...) {
				t.Errorf("events -f (pipe) has no %v line:\n%s", want, pipe)
			}
		}
		if strings.Count(pipe, "TIME\tJOB\t") != 1 || strings.Contains(pipe, "\x1b") {
			t.Errorf("events -f (pipe): want plain TSV with one header")
		}
		term := eventsTTY.out.String()
		if strings.Count(term, "TIME") != 1 || !strings.Contains(term, "│ job_state") || !strings.Contains(term, "down_requested") {
			t.Errorf("events -f (terminal): want one table header and the same events:\n%s", term)
		}
	})
	t.Run("logs -f shows the head's output until it ended", func(t *testing.T) {
		log, err := os.ReadFile(cluster.JobLog(spec.LogDir, spec.Name, cluster.RoleHead, head))
		if err != nil {
			t.Fatal(err)
		}
		pipe := logsPipe.out.String()
		if pipe != string(log) {
			t.Errorf("logs -f (pipe) printed %d bytes, the log has %d: want it all, once", len(pipe), len(log))
		}
		// A terminal turns \n into \r\n.
		if term := strings.ReplaceAll(logsTTY.out.String(), "\r\n", "\n"); term != string(log) {
			t.Errorf("logs -f (terminal) printed %d bytes, the log has %d", len(term), len(log))
		}
		if !strings.Contains(pipe, "ray node up at") {
			t.Errorf("the head's output lacks its supervisor's lines:\n%s", pipe)
		}
	})
	t.Run("logs --ray -f follows the head's Ray logs through their copies", func(t *testing.T) {
		rayDir := raynode.RayLogDir(spec.LogDir, head)
		for _, v := range []*viewer{rayTTY, rayPipe} {
			got := logSections(strings.ReplaceAll(v.out.String(), "\r\n", "\n"))
			for _, f := range []string{"gcs_server.out", "raylet.out"} {
				path := filepath.Join(rayDir, f)
				want, err := os.ReadFile(path) // the copy kept at the end: the whole log, under its cap
				if err != nil {
					t.Fatal(err)
				}
				if got[path] != string(want) {
					t.Errorf("%s: %s followed as %d bytes, the log has %d: want each line once, none missing", v.name, f, len(got[path]), len(want))
				}
			}
		}
	})
	t.Logf("MEASURED TestE2EViews took %.1f s", time.Since(start).Seconds())
}

// logSections joins what logs printed for each file, by the path its
// "==> role job: path <==" headers name.
func logSections(out string) map[string]string {
	sections := map[string]string{}
	path := ""
	for _, l := range strings.SplitAfter(out, "\n") {
		if h, ok := strings.CutPrefix(l, "==> "); ok && strings.HasSuffix(l, " <==\n") {
			if s := sections[path]; strings.HasSuffix(s, "\n\n") {
				sections[path] = s[:len(s)-1] // the blank line before this header
			}
			_, path, _ = strings.Cut(strings.TrimSuffix(h, " <==\n"), ": ")
			continue
		}
		sections[path] += l
	}
	return sections
}

// hasEventLine reports a TSV line of events for job with that event whose
// details hold every one of details.
func hasEventLine(tsv, job, event string, details ...string) bool {
	for _, l := range strings.Split(tsv, "\n") {
		cols := strings.Split(l, "\t")
		if len(cols) != 5 || cols[1] != job || cols[3] != event {
			continue
		}
		all := true
		for _, d := range details {
			all = all && strings.Contains(cols[4], d)
		}
		if all {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
