package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/backend"
	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/slurm/slurmtest"
)

// tunnelCluster makes a cluster whose head job 41 published its dashboard on
// node2's localhost, port 20001.
func tunnelCluster(t *testing.T, insecure bool) (*app, cluster.Dir) {
	t.Helper()
	a := &app{store: cluster.Store{Root: filepath.Join(t.TempDir(), "clusters")}, backends: backend.Schedulers{Slurm: slurm.New(slurmtest.NewRunner(t), uProgs)}, clock: clock.System{}}
	spec := uSpec("exp1")
	spec.Insecure = insecure
	dir, err := a.store.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.WriteHead(cluster.HeadInfo{
		Job: "41", Address: "10.1.2.3:20000", NodeIP: "10.1.2.3",
		Dashboard: "http://127.0.0.1:20001", SlurmNode: "node2", Published: time.Now().UTC(),
	}); err != nil {
		t.Fatal(err)
	}
	return a, dir
}

func TestTunnelPrintsSSHCommand(t *testing.T) {
	t.Parallel()
	a, dir := tunnelCluster(t, false)
	for _, tt := range []struct {
		name string
		o    tunnelOptions
		want string
	}{
		{"dashboard port by default", tunnelOptions{Login: "login1.example.org"}, "ssh -J login1.example.org -L 20001:127.0.0.1:20001 node2\n"},
		{"--local-port", tunnelOptions{Cluster: "exp1", Login: "ana@login1:2222", LocalPort: 8265}, "ssh -J ana@login1:2222 -L 8265:127.0.0.1:20001 node2\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s uStreams
			if err := runTunnel(s.io(false), a, tt.o); err != nil {
				t.Fatal(err)
			}
			if s.out.String() != tt.want {
				t.Errorf("stdout = %q, want %q", s.out.String(), tt.want)
			}
			msg := s.errOut.String()
			for _, want := range []string{
				"needs ssh from " + tt.o.Login + " to compute node node2",
				"srun --jobid=41 --overlap --pty bash",
				`curl -H "Authorization: Bearer $(cat '` + dir.TokenPath() + `')" http://127.0.0.1:20001/`,
				"srun --jobid=41 --overlap --pty ssh -N -R ",
				dir.TokenPath(),
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("stderr lacks %q:\n%s", want, msg)
				}
			}
			if strings.Contains(s.out.String(), dir.TokenPath()) || strings.Contains(msg, "deadbeef") {
				t.Errorf("the token path belongs on stderr only")
			}
		})
	}
}

func TestTunnelInsecureWarns(t *testing.T) {
	t.Parallel()
	a, _ := tunnelCluster(t, true)
	var s uStreams
	if err := runTunnel(s.io(false), a, tunnelOptions{Login: "login1"}); err != nil {
		t.Fatal(err)
	}
	if msg := s.errOut.String(); !strings.Contains(msg, "without Ray auth") || strings.Contains(msg, "Bearer") {
		t.Errorf("stderr of an insecure cluster's tunnel:\n%s", msg)
	}
}

func TestTunnelRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		o      tunnelOptions
		mutate func(t *testing.T, d cluster.Dir)
		usage  bool
		want   string
	}{
		{"option as login", tunnelOptions{Login: "-oProxyCommand=touch /tmp/x"}, nil, true, "invalid --login"},
		{"shell in login", tunnelOptions{Login: "login1;touch x"}, nil, true, "invalid --login"},
		{"space in login", tunnelOptions{Login: "login1 x"}, nil, true, "invalid --login"},
		{"newline in cluster", tunnelOptions{Cluster: "exp1\nx", Login: "l"}, nil, true, "newline"},
		{"bad port", tunnelOptions{Login: "l", LocalPort: 70000}, nil, true, "invalid --local-port"},
		{"unknown cluster", tunnelOptions{Cluster: "nope", Login: "l"}, nil, false, "not found"},
		{"head not published", tunnelOptions{Login: "l"}, func(t *testing.T, d cluster.Dir) {
			if err := os.Remove(filepath.Join(d.Path, "head.json")); err != nil {
				t.Fatal(err)
			}
		}, false, "has not published its head"},
		{"cluster down", tunnelOptions{Cluster: "exp1", Login: "l"}, func(t *testing.T, d cluster.Dir) {
			if err := d.MarkDown(time.Now()); err != nil {
				t.Fatal(err)
			}
		}, false, "was taken down"},
		{"head ended", tunnelOptions{Login: "l"}, func(t *testing.T, d cluster.Dir) {
			if err := d.WriteNode(cluster.NodeRecord{Job: "41", Role: cluster.RoleHead, Phase: cluster.PhaseFailed, Reason: "ray exited"}); err != nil {
				t.Fatal(err)
			}
		}, false, "head job 41 of cluster exp1 has failed"},
		{"dashboard not on loopback", tunnelOptions{Login: "l"}, func(t *testing.T, d cluster.Dir) {
			if err := d.WriteHead(cluster.HeadInfo{Job: "41", Dashboard: "http://0.0.0.0:20001", SlurmNode: "node2"}); err != nil {
				t.Fatal(err)
			}
		}, false, "not a 127.0.0.1 address"},
		{"odd head node", tunnelOptions{Login: "l"}, func(t *testing.T, d cluster.Dir) {
			if err := d.WriteHead(cluster.HeadInfo{Job: "41", Dashboard: "http://127.0.0.1:20001", SlurmNode: "-oProxyCommand=x"}); err != nil {
				t.Fatal(err)
			}
		}, false, "not a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, dir := tunnelCluster(t, false)
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			var s uStreams
			err := runTunnel(s.io(false), a, tt.o)
			var ue usageError
			if err == nil || errors.As(err, &ue) != tt.usage {
				t.Fatalf("runTunnel = %v (%T), want an error (usage error: %v)", err, err, tt.usage)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error %q: want one line containing %q", msg, tt.want)
			}
			if s.out.Len() != 0 {
				t.Errorf("printed %q, want no command", s.out.String())
			}
		})
	}
}

// TestTunnelCommandDefaultsToThisHost runs the command as a user would; not
// parallel, because it sets SRAYBATCH_HOME.
func TestTunnelCommandDefaultsToThisHost(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || !sshHost.MatchString(host) {
		t.Skipf("host name %q (%v) is not usable as --login", host, err)
	}
	home := t.TempDir()
	t.Setenv("SRAYBATCH_HOME", home)
	dir, err := cluster.Store{Root: filepath.Join(home, "clusters")}.Create(uSpec("exp1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.WriteHead(cluster.HeadInfo{Job: "41", Dashboard: "http://127.0.0.1:20001", SlurmNode: "node2"}); err != nil {
		t.Fatal(err)
	}
	var s uStreams
	if code := run(context.Background(), s.io(false), []string{"tunnel"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, s.errOut.String())
	}
	if want := "ssh -J " + host + " -L 20001:127.0.0.1:20001 node2\n"; s.out.String() != want {
		t.Errorf("stdout = %q, want %q", s.out.String(), want)
	}
	var u uStreams
	if code := run(context.Background(), u.io(false), []string{"tunnel", "--local-port", "x"}); code != exitUsage {
		t.Errorf("tunnel --local-port x: exit %d, want %d", code, exitUsage)
	}
}
