package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/backend"
	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/slurm/slurmtest"
)

func TestEnvExports(t *testing.T) {
	t.Parallel()
	for _, insecure := range []bool{false, true} {
		// A store path with a quote and a space must survive the shell.
		stub := slurmtest.NewRunner(t)
		a := &app{store: cluster.Store{Root: filepath.Join(t.TempDir(), "it's a home", "clusters")}, backends: backend.Schedulers{Slurm: slurm.New(stub, uProgs)}, clock: clock.System{}}
		spec := uSpec("exp1")
		spec.Insecure = insecure
		dir, err := a.store.Create(spec, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := dir.WriteHead(cluster.HeadInfo{Job: "41", Address: "10.1.2.3:20000"}); err != nil {
			t.Fatal(err)
		}
		var s uStreams
		if err := runEnv(s.io(false), a, envOptions{Cluster: "exp1"}); err != nil {
			t.Fatal(err)
		}
		mode := "token"
		if insecure {
			mode = "disabled"
		}
		want := "unset RAY_AUTH_TOKEN\n" +
			"export RAY_ADDRESS='10.1.2.3:20000'\n" +
			"export RAY_AUTH_MODE=" + mode + "\n" +
			"export RAY_AUTH_TOKEN_PATH='" + strings.ReplaceAll(dir.TokenPath(), "'", `'\''`) + "'\n"
		if s.out.String() != want {
			t.Errorf("env output =\n%s\nwant\n%s", s.out.String(), want)
		}

		bash, err := exec.LookPath("bash")
		if err != nil {
			continue
		}
		cmd := exec.Command(bash, "--noprofile", "--norc", "-c",
			`eval "$1"; printf '%s\n' "$RAY_ADDRESS" "$RAY_AUTH_MODE" "$RAY_AUTH_TOKEN_PATH" "${RAY_AUTH_TOKEN-unset}"`, "sh", s.out.String())
		cmd.Env = append(os.Environ(), "RAY_AUTH_TOKEN=from-another-cluster")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("eval of env output: %v", err)
		}
		if got := string(out); got != "10.1.2.3:20000\n"+mode+"\n"+dir.TokenPath()+"\nunset\n" {
			t.Errorf("after eval: %q", got)
		}
	}
}

func TestEnvBeforeHeadPublished(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	f.createCluster(t, "exp1", "41")
	var s uStreams
	err := runEnv(s.io(false), f.app, envOptions{})
	if err == nil || !strings.Contains(err.Error(), "has not published its head address") {
		t.Errorf("runEnv = %v, want an error saying the head has not published", err)
	}
	if s.out.Len() != 0 {
		t.Errorf("printed %q, want nothing an eval could run", s.out.String())
	}
}

func TestResolveCluster(t *testing.T) {
	t.Parallel()
	t.Run("none", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		_, _, err := f.app.resolveCluster("")
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "no live cluster") || !strings.Contains(err.Error(), "sraybatch up") {
			t.Errorf("resolveCluster with none = %v", err)
		}
	})
	t.Run("one live, one down", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		f.createCluster(t, "live", "41")
		down, _ := f.createCluster(t, "gone", "40")
		if err := down.MarkDown(time.Now()); err != nil {
			t.Fatal(err)
		}
		d, _, err := f.app.resolveCluster("")
		if err != nil || d.Name() != "live" {
			t.Errorf("resolveCluster = %v, %v; want live", d.Path, err)
		}
		// Named explicitly, a downed cluster is still found.
		if d, _, err := f.app.resolveCluster("gone"); err != nil || d.Name() != "gone" {
			t.Errorf("resolveCluster(gone) = %v, %v", d.Path, err)
		}
	})
	t.Run("two live", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		f.createCluster(t, "b", "41")
		f.createCluster(t, "a", "42")
		_, _, err := f.app.resolveCluster("")
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "2 live clusters (a, b)") || !strings.Contains(err.Error(), "--cluster") {
			t.Errorf("resolveCluster with two = %v", err)
		}
		if d, _, err := f.app.resolveCluster("b"); err != nil || d.Name() != "b" {
			t.Errorf("resolveCluster(b) = %v, %v", d.Path, err)
		}
	})
	t.Run("named but missing", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		f.createCluster(t, "a", "41")
		if _, _, err := f.app.resolveCluster("nope"); !errors.Is(err, cluster.ErrNotFound) {
			t.Errorf("resolveCluster(nope) = %v, want ErrNotFound", err)
		}
	})
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		code int
		msg  string // what stderr must be exactly
	}{
		{"success", nil, exitOK, ""},
		{"help", pflag.ErrHelp, exitOK, ""},
		{"usage", usagef("invalid --time %q", "x"), exitUsage, "sraybatch up: invalid --time \"x\"\n"},
		{"wrapped usage", errors.Join(errors.New("ctx"), usageError{errors.New("bad")}), exitUsage, "sraybatch up: ctx bad\n"},
		{"timeout", timeoutError{errors.New("head job 41 not up within 10m0s: PENDING Resources")}, exitTimeout, "sraybatch up: head job 41 not up within 10m0s: PENDING Resources\n"},
		{"failure", errors.New("submit head job: sbatch failed: sbatch: error: nope"), exitFailure, "sraybatch up: submit head job: sbatch failed: sbatch: error: nope\n"},
		{"multi-line failure", errors.New("ray exited:\n  Traceback\n\tboom\n"), exitFailure, "sraybatch up: ray exited: Traceback boom\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s uStreams
			if code := exitCode(s.io(false), "up", tt.err); code != tt.code {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, code, tt.code)
			}
			if s.errOut.String() != tt.msg {
				t.Errorf("stderr = %q, want %q", s.errOut.String(), tt.msg)
			}
			if s.out.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", s.out.String())
			}
		})
	}
}

func TestHelpOfEachCommand(t *testing.T) {
	t.Parallel()
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, flag := range []string{"--help", "-h"} {
				var s uStreams
				if code := run(t.Context(), s.io(false), []string{c.name, flag}); code != exitOK {
					t.Errorf("%s %s: exit %d, want 0 (stderr %q)", c.name, flag, code, s.errOut.String())
				}
				out := s.out.String()
				for _, want := range []string{"Usage: sraybatch " + c.name, exitCodesHelp} {
					if !strings.Contains(out, want) {
						t.Errorf("%s %s lacks %q:\n%s", c.name, flag, want, out)
					}
				}
				if s.errOut.Len() != 0 {
					t.Errorf("%s %s wrote to stderr: %q", c.name, flag, s.errOut.String())
				}
				// A flag whose help names its default must not get pflag's too
				// (train --gpus-per-actor once showed "(default -1)" after it).
				for _, line := range strings.Split(out, "\n") {
					if strings.Count(line, "(default") > 1 {
						t.Errorf("%s %s: a flag shows two defaults: %q", c.name, flag, line)
					}
				}
			}
		})
	}
}

func TestTopLevelUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"--help"}, {"help"}} {
		var s uStreams
		if code := run(t.Context(), s.io(false), args); code != exitOK {
			t.Errorf("run(%q) = %d, want 0", args, code)
		}
		out := s.out.String()
		if !strings.Contains(out, exitCodesHelp) || !strings.Contains(out, "  up ") || strings.Contains(out, "  node ") {
			t.Errorf("run(%q) usage lacks the exit codes or a command, or shows a hidden one:\n%s", args, out)
		}
	}
}

// Bad command lines are rejected before any state or SLURM is touched.
func TestBadCommandLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `sraybatch: unknown command "frobnicate": see sraybatch --help`},
		{[]string{"up", "--bogus"}, "sraybatch up: unknown flag: --bogus (see --help)"},
		{[]string{"grow", "-n", "many"}, `sraybatch grow: invalid argument "many" for "-n, --count" flag`},
		{[]string{"status", "extra"}, `sraybatch status: unexpected argument "extra" (see --help)`},
		{[]string{"down", "--timeout", "soon"}, "sraybatch down: invalid argument"},
		{[]string{"version", "--nope"}, "sraybatch version: unknown flag: --nope"},
	}
	for _, tt := range tests {
		var s uStreams
		if code := run(t.Context(), s.io(false), tt.args); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d", tt.args, code, exitUsage)
		}
		msg := s.errOut.String()
		if !strings.HasPrefix(msg, tt.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("run(%q) stderr = %q, want one line starting %q", tt.args, msg, tt.want)
		}
		if s.out.Len() != 0 {
			t.Errorf("run(%q) stdout = %q", tt.args, s.out.String())
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var s uStreams
	if code := run(t.Context(), s.io(false), []string{"version"}); code != exitOK || s.out.String() != "sraybatch "+version+"\n" {
		t.Errorf("version: exit %d, stdout %q", code, s.out.String())
	}
}
