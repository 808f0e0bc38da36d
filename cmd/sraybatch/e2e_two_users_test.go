//go:build e2e

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/proctree"
)

// sharedNode is where both users' heads are forced: one node of the dev SLURM.
const sharedNode = "node3"

// TestE2ETwoUsersOneNode puts two unprivileged users' clusters on one node
// at the same time — same cluster name, started at the same moment, so their
// port searches race — and checks that they do not collide, that neither
// user can read or write the other's token, state, logs or Ray session
// directory (nor move the other's raylet socket), and that `down` by one
// leaves the other's processes alone.
func TestE2ETwoUsersOneNode(t *testing.T) {
	// Alone, not e2eShare: both heads need node3's two GPUs.
	alice := needE2E(t)
	if alice.user == nil {
		skipOutsideCI(t, "two users on one node: the test must run as root to act as %s and %s", e2eDefaultUser, e2eOtherUser)
	}
	bob := needE2EAs(t, e2eOtherUser)
	if bob.user.uid == alice.user.uid {
		t.Fatalf("%s and %s are the same uid %d: two users are needed", alice.user.name, bob.user.name, bob.user.uid)
	}
	users := []e2eEnv{alice, bob}
	const name = "shared"

	var wg sync.WaitGroup
	ups := make([]result, len(users))
	for i, e := range users {
		t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			ups[i] = e.sray(t, "up", "--name", name, "--gpus-per-node", "1", "--sbatch-arg=--nodelist="+sharedNode,
				"--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
		}()
	}
	wg.Wait()
	for i, r := range ups {
		if r.code != 0 {
			t.Fatalf("up as %s: exit %d: %s", users[i].user.name, r.code, r.stderr)
		}
	}

	type side struct {
		e    e2eEnv
		dir  cluster.Dir
		rec  cluster.NodeRecord
		head cluster.HeadInfo
	}
	sides := make([]side, len(users))
	for i, e := range users {
		s := side{e: e, dir: cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}}
		h, ok, err := s.dir.Head()
		if err != nil || !ok {
			t.Fatalf("%s: head.json: %v (published %v)", e.user.name, err, ok)
		}
		s.head = h
		rec, ok, err := s.dir.Node(h.Job)
		if err != nil || !ok {
			t.Fatalf("%s: head record: %v", e.user.name, err)
		}
		s.rec = rec
		if rec.SlurmNode != sharedNode || rec.TempDir == "" {
			t.Fatalf("%s: head on %q with temp dir %q; want it on %s", e.user.name, rec.SlurmNode, rec.TempDir, sharedNode)
		}
		sides[i] = s
	}

	t.Run("no port collision", func(t *testing.T) {
		var all [][]int
		for _, s := range sides {
			ports := listeningPorts(t, clusterProcesses(s.dir.Path))
			t.Logf("CHECK %s's head on %s listens on %d ports; Ray at %s", s.e.user.name, sharedNode, len(ports), s.head.Address)
			if len(ports) < 3 {
				t.Errorf("%s's cluster listens on %v: too few ports found to compare", s.e.user.name, ports)
			}
			all = append(all, ports)
		}
		for _, p := range all[0] {
			if slices.Contains(all[1], p) {
				t.Errorf("port %d is listened on by both users' clusters", p)
			}
		}
		for _, s := range sides {
			waitFor(t, s.e.user.name+"'s head joined in status", 60*time.Second, func() bool {
				st := s.e.status(t, name)
				return len(st.Jobs) == 1 && st.Jobs[0].Ray == cluster.MembershipJoined
			})
		}
	})

	t.Run("neither user reaches the other's files", func(t *testing.T) {
		for i, victim := range sides {
			intruder := sides[1-i].e
			targets := privateTargets(t, victim.dir, victim.rec, victim.head.Job)
			for _, tg := range targets {
				if _, err := os.Lstat(tg.path); err != nil {
					t.Fatalf("%s's %s %s does not exist, so the check would prove nothing: %v", victim.e.user.name, tg.what, tg.path, err)
				}
				for _, argv := range tg.attempts {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					out, err := intruder.command(ctx, argv[0], argv[1:]...).CombinedOutput()
					cancel()
					t.Logf("CHECK %s: %s on %s's %s: %s", intruder.user.name, argv[0], victim.e.user.name, tg.what, firstLine(out, err))
					if err == nil || !strings.Contains(string(out), "Permission denied") {
						t.Errorf("%s ran %q on %s's %s: %v %s; want Permission denied", intruder.user.name, argv, victim.e.user.name, tg.what, err, out)
					}
				}
			}
			if _, err := os.Lstat(filepath.Join(victim.rec.TempDir, "intruder")); err == nil {
				t.Errorf("%s created a file in %s's node temp dir", intruder.user.name, victim.e.user.name)
			}
		}
	})

	t.Run("down by one leaves the other alone", func(t *testing.T) {
		a, b := sides[0], sides[1]
		before := processStarts(clusterProcesses(b.dir.Path))
		if len(before) < 3 {
			t.Fatalf("%s's cluster has %d processes; want its supervisor, raylet and GCS", b.e.user.name, len(before))
		}
		a.e.mustSray(t, "down", "--cluster", name)
		waitFor(t, a.e.user.name+"'s cluster processes gone after down", 60*time.Second, func() bool {
			return len(clusterProcesses(a.dir.Path)) == 0
		})
		for pid, start := range before {
			if st, ok := proctree.ReadProcStat(pid); !ok || !st.Live() || st.Start != start {
				t.Errorf("%s's process %d (%s) ended when %s took their cluster down", b.e.user.name, pid, cmdline(pid), a.e.user.name)
			}
		}
		if st := b.e.status(t, name); len(st.Jobs) != 1 || st.Jobs[0].Ray != cluster.MembershipJoined {
			t.Errorf("%s's cluster after %s's down: %+v; want its head still joined", b.e.user.name, a.e.user.name, st.Jobs)
		}
		t.Logf("CHECK %s's down: %d processes of %s's cluster on %s untouched", a.e.user.name, len(before), b.e.user.name, sharedNode)
	})
}

// privateTarget is one thing of a user's that no other user may touch, and
// the commands another user tries on it.
type privateTarget struct {
	what, path string
	attempts   [][]string
}

// privateTargets lists a cluster's token, state, logs and its head's Ray
// session directory and raylet socket.
func privateTargets(t *testing.T, dir cluster.Dir, head cluster.NodeRecord, headJob string) []privateTarget {
	t.Helper()
	read := func(p string) [][]string { return [][]string{{"cat", p}} }
	sessionLogs := filepath.Join(head.TempDir, "r", "session_latest", "logs")
	sockets, _ := filepath.Glob(filepath.Join(head.TempDir, "r", "session_*", "sockets", "raylet*"))
	if len(sockets) == 0 {
		t.Fatalf("no raylet socket under %s", head.TempDir)
	}
	logs, _ := filepath.Glob(filepath.Join(dir.Path, "logs", "*.out"))
	if len(logs) == 0 {
		t.Fatalf("no job log in %s", filepath.Join(dir.Path, "logs"))
	}
	return []privateTarget{
		{"Ray token", dir.TokenPath(), read(dir.TokenPath())},
		{"spec", filepath.Join(dir.Path, "spec.json"), read(filepath.Join(dir.Path, "spec.json"))},
		{"head record", filepath.Join(dir.Path, "nodes", headJob+".json"), read(filepath.Join(dir.Path, "nodes", headJob+".json"))},
		{"job log (SLURM writes it 0644)", logs[0], read(logs[0])},
		{"cluster directory", dir.Path, [][]string{{"ls", dir.Path}, {"touch", filepath.Join(dir.Path, "intruder")}}},
		{"node temp dir", head.TempDir, [][]string{{"ls", head.TempDir}, {"touch", filepath.Join(head.TempDir, "intruder")}}},
		{"raylet log", filepath.Join(sessionLogs, "raylet.out"), read(filepath.Join(sessionLogs, "raylet.out"))},
		{"raylet socket", sockets[0], [][]string{{"mv", sockets[0], sockets[0] + ".moved"}}},
	}
}

func processStarts(pids []int) map[int]uint64 {
	out := map[int]uint64{}
	for _, p := range pids {
		if st, ok := proctree.ReadProcStat(p); ok && st.Live() {
			out[p] = st.Start
		}
	}
	return out
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

func firstLine(out []byte, err error) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		return fmt.Sprintf("%v: %s", err, line)
	}
	return "succeeded: " + line
}
