package slurm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/slurm/slurmtest"
)

// SLURM output as 22.05 (the dev cluster), 23.02, 23.11, 24.05, 24.11 and
// 25.05 print it lives in testdata/versions/<release>/, one file per command
// (testdata/versions/README.md lists them and the sources each form comes
// from). Every fixture goes through the same Scheduler calls sraybatch makes,
// with the exact argv, and every parsed value is checked against the tables
// below.

const versionsDir = "testdata/versions"

// versionProgs are the plain program names, so the argv registered below
// read as the commands the fixtures' headers name.
var versionProgs = slurm.Programs{Sbatch: "sbatch", Squeue: "squeue", Scancel: "scancel", Scontrol: "scontrol", Sinfo: "sinfo"}

// jobWant is one squeue line's expected Job, and what sraybatch makes of its
// state.
type jobWant struct {
	id, arrayJob, task string
	name, user         string
	state              scheduler.JobState
	active, started    bool
	reason, node       string
	gpus               int
	elapsed, left      time.Duration
	limit              time.Duration
	unlimited          bool
}

// nodeWant is one sinfo -N line's expected NodeGPUs and its Free().
type nodeWant struct {
	node, partition, state string
	total, used, free      int
}

// partWant is the MaxTime expected for one partition ("": the default one).
type partWant struct {
	partition string
	max       time.Duration
	unlimited bool
}

type versionCase struct {
	version    string
	jobs       []jobWant         // squeue.txt
	submitID   string            // sbatch.txt
	nodes      []nodeWant        // sinfo-nodes.txt
	partitions []partWant        // sinfo-partitions.txt
	nodeAddrs  map[string]string // scontrol-show-node.txt: node -> NodeAddr
	pings      map[string]bool   // scontrol-ping*.txt -> whether Ping succeeds
}

func versionCases() []versionCase {
	const (
		s = time.Second
		m = time.Minute
		h = time.Hour
		d = 24 * time.Hour
	)
	const yes, no = true, false
	var (
		pd = scheduler.Pending
		r  = scheduler.Running
	)
	return []versionCase{
		{
			version: "22.05",
			jobs: []jobWant{
				{"301", "", "", "sray-exp1-head", "alice", r, yes, yes, "", "node1", 1, h + 2*m + 3*s, 58*m + 57*s, 2 * h, no},
				{"302_0", "302", "0", "sray-exp1-worker", "alice", r, yes, yes, "", "node2", 2, 12 * m, h + 48*m, 2 * h, no},
				{"302_1", "302", "1", "sray-exp1-worker", "alice", pd, yes, no, "Resources", "", 2, 0, 2 * h, 2 * h, no},
				{"302_2", "302", "2", "sray-exp1-worker", "alice", pd, yes, no, "Priority", "", 2, 0, 2 * h, 2 * h, no},
				{"303", "", "", "sray-exp1-driver", "alice", scheduler.Completing, yes, yes, "", "node1", 0, 2*h + 5*s, 0, 2 * h, no},
				{"304", "", "", "train", "bob", pd, yes, no, "JobHeldUser", "", 4, 0, d, d, no},
				{"305", "", "", "sray-exp2-head", "bob", scheduler.Timeout, no, no, "TimeLimit", "node3", 1, 30*m + 2*s, 0, 30 * m, no},
			},
			submitID: "7",
			nodes: []nodeWant{
				{"node1", "debug", "mixed", 2, 1, 1},
				{"node2", "debug", "allocated", 2, 2, 0},
				{"node3", "debug", "idle", 2, 0, 2},
				{"node4", "debug", "drained", 2, 0, 0},
				{"node5", "debug", "down*", 2, 0, 0},
				{"cpu1", "cpu", "idle", 0, 0, 0},
			},
			partitions: []partWant{{"", 30 * m, no}, {"long", 0, yes}, {"cpu", d, no}},
			nodeAddrs:  map[string]string{"node2": "127.0.0.12"},
			pings:      map[string]bool{"scontrol-ping.txt": yes},
		},
		{
			version: "23.02",
			jobs: []jobWant{
				{"401", "", "", "sray-exp1-head", "alice", r, yes, yes, "", "gpu01", 1, 3*h + 4*m + 5*s, 20*h + 55*m + 55*s, d, no},
				{"402_3", "402", "3", "sray-exp1-worker", "alice", r, yes, yes, "", "gpu02", 2, 4 * m, 23*h + 56*m, d, no},
				{"402_4", "402", "4", "sray-exp1-worker", "alice", pd, yes, no, "JobArrayTaskLimit", "", 2, 0, d, d, no},
				{"402_5", "402", "5", "sray-exp1-worker", "alice", pd, yes, no, "JobArrayTaskLimit", "", 2, 0, d, d, no},
				{"403", "", "", "sray-exp1-driver", "alice", scheduler.Failed, no, no, "RaisedSignal", "gpu01", 0, 3 * s, 23*h + 59*m + 57*s, d, no},
				{"404", "", "", "sray-exp2-worker", "bob", scheduler.RequeueHold, yes, no, "JobHoldMaxRequeue", "", 1, 0, 4 * h, 4 * h, no},
				{"405+0", "", "", "hetjob", "bob", r, yes, yes, "", "gpu03", 1, 10 * m, 50 * m, h, no},
				{"405+1", "", "", "hetjob", "bob", r, yes, yes, "", "cpu01", 0, 10 * m, 50 * m, h, no},
				{"406", "", "", "sray-exp3-head", "carol", pd, yes, no, "ReqNodeNotAvail, UnavailableNodes:gpu[05-06]", "", 4, 0, 0, 0, yes},
			},
			submitID: "4242",
			nodes: []nodeWant{
				{"gpu01", "gpu", "mixed", 4, 2, 2},
				{"gpu02", "gpu", "allocated", 4, 4, 0},
				{"gpu03", "gpu", "mixed", 4, 3, 1},
				{"gpu04", "gpu", "idle", 4, 0, 4},
				{"gpu05", "gpu", "drained", 4, 0, 0},
				{"gpu06", "gpu", "down*", 4, 0, 0},
				{"cloud01", "cloud", "idle~", 1, 0, 1},
				{"cloud02", "cloud", "idle#", 1, 0, 1},
				{"cloud03", "cloud", "idle%", 1, 0, 0},
				{"cpu01", "cpu", "idle", 0, 0, 0},
			},
			partitions: []partWant{{"", 2 * d, no}, {"cloud", 4 * h, no}, {"cpu", 0, yes}, {"debug", 30 * m, no}},
			nodeAddrs:  map[string]string{"gpu03": "10.1.0.13"},
			pings:      map[string]bool{"scontrol-ping.txt": yes},
		},
		{
			version: "23.11",
			jobs: []jobWant{
				{"501", "", "", "sray-exp1-head", "alice", r, yes, yes, "", "gpu01-ib", 1, 2 * m, 3*h + 58*m, 4 * h, no},
				{"502", "", "", "sray-exp1-worker", "alice", r, yes, yes, "", "gpu[02-03]-ib", 8, 2 * m, 3*h + 58*m, 4 * h, no},
				{"503", "", "", "sray-exp1-worker", "alice", pd, yes, no, "Constraints", "", 8, 0, 4 * h, 4 * h, no},
				{"504", "", "", "train", "bob", scheduler.Suspended, yes, yes, "", "gpu04-ib", 2, h, 3 * h, 4 * h, no},
				{"505_7", "505", "7", "sweep", "bob", pd, yes, no, "Dependency", "", 1, 0, 15 * m, 15 * m, no},
				{"506", "", "", "sray-exp2-head", "carol", scheduler.Configuring, yes, yes, "", "cloud01", 1, 0, h, h, no},
				{"507", "", "", "sray-exp2-worker", "carol", scheduler.Cancelled, no, no, "", "cloud02", 1, 41 * s, 59*m + 19*s, h, no},
			},
			submitID: "5501",
			nodes: []nodeWant{
				{"gpu01-ib", "gpu", "mixed", 8, 1, 7},
				{"gpu02-ib", "gpu", "allocated", 8, 8, 0},
				{"gpu03-ib", "gpu", "allocated", 8, 8, 0},
				{"gpu04-ib", "gpu", "mixed", 8, 2, 6},
				{"gpu05-ib", "gpu", "mixed", 4, 1, 3},
				{"cloud01", "cloud", "mixed#", 1, 1, 0},
				{"cloud02", "cloud", "completing", 1, 1, 0},
			},
			partitions: []partWant{{"", 4 * h, no}, {"cloud", h, no}},
			nodeAddrs:  map[string]string{"cloud01": "172.31.20.7", "gpu01-ib": "10.2.0.1"},
			pings:      map[string]bool{"scontrol-ping.txt": yes},
		},
		{
			version: "24.05",
			jobs: []jobWant{
				{"601", "", "", "sray-exp1-head", "alice", r, yes, yes, "", "gpu01", 1, 5*d + h + 2*m + 3*s, d + 22*h + 57*m + 57*s, 7 * d, no},
				{"602_0", "602", "0", "sray-exp1-worker", "alice", r, yes, yes, "", "gpu01", 1, m, 6*d + 23*h + 59*m, 7 * d, no},
				{"602_1", "602", "1", "sray-exp1-worker", "alice", pd, yes, no, "AssocGrpGRES", "", 1, 0, 7 * d, 7 * d, no},
				{"603", "", "", "sray-exp2-head", "bob", scheduler.ResvDelHold, yes, no, "ReservationDeleted", "", 2, 0, 12 * h, 12 * h, no},
				{"604", "", "", "sray-exp2-worker", "bob", scheduler.OutOfMemory, no, no, "OutOfMemory", "gpu03", 2, 17*m + 45*s, 11*h + 42*m + 15*s, 12 * h, no},
				{"605", "", "", "notebook", "carol", r, yes, yes, "", "gpu04", 1, 0, 0, 0, yes},
				{"606_2", "606", "2", "sweep", "carol", pd, yes, no, "Priority", "", 0, 0, 30 * m, 30 * m, no},
			},
			submitID: "612",
			nodes: []nodeWant{
				{"gpu01", "gpu", "mixed", 8, 1, 7},
				{"gpu02", "gpu", "blocked", 8, 0, 0},
				{"gpu03", "gpu", "planned", 8, 0, 8},
				{"gpu04", "gpu", "mixed-", 8, 4, 4},
				{"gpu05", "gpu", "inval", 8, 0, 0},
				{"gpu06", "gpu", "reboot^", 8, 0, 0},
				{"gpu07", "gpu", "allocated+", 8, 8, 0},
			},
			partitions: []partWant{{"", 7 * d, no}, {"queue-on-demand", 0, yes}, {"debug", h, no}},
			nodeAddrs: map[string]string{
				"queue-on-demand-dy-compute-resource-2-2": "192.168.127.110",
				"gpu04": "10.3.0.4",
			},
			pings: map[string]bool{"scontrol-ping.txt": yes},
		},
		{
			version: "24.11",
			jobs: []jobWant{
				{"701", "", "", "sray-exp1-head", "alice", r, yes, yes, "", "dgx01", 1, 45 * m, h + 15*m, 2 * h, no},
				{"702_0", "702", "0", "sray-exp1-worker", "alice", r, yes, yes, "", "dgx01", 4, 44*m + 10*s, h + 15*m + 50*s, 2 * h, no},
				{"702_1", "702", "1", "sray-exp1-worker", "alice", pd, yes, no, "ReqNodeNotAvail, Reserved for maintenance", "", 4, 0, 2 * h, 2 * h, no},
				{"703", "", "", "sray-exp2-head", "bob", pd, yes, no, "QOSMaxGRESPerUser", "", 8, 0, 2 * d, 2 * d, no},
				{"704", "", "", "sray-exp2-worker", "bob", scheduler.NodeFail, no, no, "NodeDown", "dgx03", 8, 3*h + 12*m, d + 20*h + 48*m, 2 * d, no},
				{"705", "", "", "prep", "carol", scheduler.Completed, no, no, "", "dgx02", 0, 2*m + 3*s, 57*m + 57*s, h, no},
				{"706", "", "", "sray-exp3-head", "carol", scheduler.Preempted, no, no, "", "dgx02", 2, 10 * m, 50 * m, h, no},
				{"707", "", "", "sray-exp3-worker", "carol", scheduler.Requeued, yes, no, "", "dgx02", 2, 10 * m, 50 * m, h, no},
			},
			submitID: "134217731",
			nodes: []nodeWant{
				{"dgx01", "gpu", "mixed", 8, 5, 3},
				{"dgx02", "gpu", "idle", 8, 0, 8},
				{"dgx03", "gpu", "down*", 8, 0, 0},
				{"dgx04", "gpu", "reserved", 8, 0, 0},
				{"dgx05", "gpu", "maint", 8, 0, 0},
				{"dgx06", "gpu", "idle!", 8, 0, 0},
				{"dgx07", "gpu", "draining", 8, 8, 0},
			},
			partitions: []partWant{{"", 2 * d, no}, {"interactive", 8 * h, no}},
			nodeAddrs:  map[string]string{"dgx03": "10.4.0.3"},
			pings:      map[string]bool{"scontrol-ping.txt": yes},
		},
		{
			version: "25.05",
			jobs: []jobWant{
				{"801", "", "", "sray-exp1-head", "alice", r, yes, yes, "", "gpu01", 1, 10 * m, 3*h + 50*m, 4 * h, no},
				{"802_10", "802", "10", "sray-exp1-worker", "alice", r, yes, yes, "", "gpu02", 2, 9*m + 30*s, 3*h + 50*m + 30*s, 4 * h, no},
				{"802_11", "802", "11", "sray-exp1-worker", "alice", pd, yes, no, "BeginTime", "", 2, 0, 4 * h, 4 * h, no},
				{"803", "", "", "old-job", "12345", scheduler.Completed, no, no, "", "gpu03", 0, h, h, 2 * h, no},
				{"804", "", "", "sray-exp2-head", "bob", scheduler.SpecialExit, yes, no, "", "", 1, 0, h, h, no},
				{"805", "", "", "sray-exp2-worker", "bob", scheduler.Deadline, no, no, "DeadLine", "", 1, 0, h, h, no},
				{"806", "", "", "sray-exp3-head", "carol", scheduler.BootFail, no, no, "NodeDown", "cloud01", 4, 0, h, h, no},
				{"807", "", "", "sray-exp3-worker", "carol", pd, yes, no, "", "", 4, 0, 0, 0, yes},
				{"808", "", "", "sray-exp4-head", "dave", scheduler.Stopped, yes, yes, "", "gpu04", 1, 5 * m, 55 * m, h, no},
			},
			submitID: "9001",
			nodes: []nodeWant{
				{"gpu01", "gpu", "mixed", 4, 1, 3},
				{"gpu02", "gpu", "mixed", 4, 2, 2},
				{"gpu03", "gpu", "idle", 4, 0, 4},
				{"gpu04", "gpu", "mixed@", 4, 1, 0},
				{"gpu05", "gpu", "down~", 4, 0, 0},
				{"gb01", "gb200", "allocated", 4, 4, 0},
				{"gb02", "gb200", "drained*", 4, 0, 0},
			},
			partitions: []partWant{{"", 12 * h, no}, {"gb200", 3 * d, no}, {"preempt", 0, yes}},
			nodeAddrs:  map[string]string{"gpu02": "10.5.0.2"},
			pings:      map[string]bool{"scontrol-ping.txt": yes, "scontrol-ping-down.txt": no},
		},
	}
}

// readVersionFixture returns a fixture without its "#" annotation lines.
func readVersionFixture(t *testing.T, version, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(versionsDir, version, name))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			out.WriteString(line)
		}
	}
	return out.String()
}

func TestVersionFixtures(t *testing.T) {
	t.Parallel()
	for _, vc := range versionCases() {
		t.Run(vc.version, func(t *testing.T) {
			t.Parallel()
			t.Run("squeue", func(t *testing.T) { checkVersionJobs(t, vc) })
			t.Run("sbatch", func(t *testing.T) { checkVersionSubmit(t, vc) })
			t.Run("sinfo-nodes", func(t *testing.T) { checkVersionNodes(t, vc) })
			t.Run("sinfo-partitions", func(t *testing.T) { checkVersionPartitions(t, vc) })
			t.Run("scontrol-show-node", func(t *testing.T) { checkVersionNodeAddr(t, vc) })
			t.Run("scontrol-ping", func(t *testing.T) { checkVersionPing(t, vc) })
		})
	}
}

func checkVersionJobs(t *testing.T, vc versionCase) {
	out := readVersionFixture(t, vc.version, "squeue.txt")
	r := slurmtest.NewRunner(t)
	r.Register([]string{"squeue", "-h", "-r", "--states=all", "-o", "%i|%j|%u|%T|%r|%N|%b|%M|%L|%l"}, out, nil)
	jobs, err := slurm.New(r, versionProgs).Jobs(context.Background(), scheduler.Query{})
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	if len(jobs) != len(vc.jobs) {
		t.Fatalf("got %d jobs, want %d: %+v", len(jobs), len(vc.jobs), jobs)
	}
	for i, w := range vc.jobs {
		want := scheduler.Job{
			ID: w.id, ArrayJobID: w.arrayJob, ArrayTaskID: w.task, Name: w.name, User: w.user,
			State: w.state, Reason: w.reason, Node: w.node, GPUs: w.gpus,
			Elapsed: w.elapsed, TimeLeft: w.left, TimeLimit: w.limit, Unlimited: w.unlimited,
		}
		if !reflect.DeepEqual(jobs[i], want) {
			t.Errorf("job %d =\n%+v\nwant\n%+v", i, jobs[i], want)
		}
		if a, s := jobs[i].State.Active(), jobs[i].State.Started(); a != w.active || s != w.started {
			t.Errorf("job %s (%s): Active, Started = %v, %v; want %v, %v", w.id, w.state, a, s, w.active, w.started)
		}
	}
}

func checkVersionSubmit(t *testing.T, vc versionCase) {
	r := slurmtest.NewRunner(t)
	r.Register([]string{"sbatch", "--parsable", "job.sbatch"}, readVersionFixture(t, vc.version, "sbatch.txt"), nil)
	id, err := slurm.New(r, versionProgs).Submit(context.Background(), "job.sbatch")
	if err != nil || id != vc.submitID {
		t.Errorf("Submit = %q, %v; want %q", id, err, vc.submitID)
	}
}

func checkVersionNodes(t *testing.T, vc versionCase) {
	r := slurmtest.NewRunner(t)
	r.Register([]string{"sinfo", "-h", "-N", "-O", "NodeList:0|,Partition:0|,StateLong:0|,Gres:0|,GresUsed:0"},
		readVersionFixture(t, vc.version, "sinfo-nodes.txt"), nil)
	nodes, err := slurm.New(r, versionProgs).FreeGPUs(context.Background(), "")
	if err != nil {
		t.Fatalf("FreeGPUs: %v", err)
	}
	if len(nodes) != len(vc.nodes) {
		t.Fatalf("got %d nodes, want %d: %+v", len(nodes), len(vc.nodes), nodes)
	}
	for i, w := range vc.nodes {
		want := scheduler.NodeGPUs{Node: w.node, Partition: w.partition, State: w.state, Total: w.total, Used: w.used}
		if nodes[i] != want {
			t.Errorf("node %d = %+v, want %+v", i, nodes[i], want)
		}
		if f := nodes[i].Free(); f != w.free {
			t.Errorf("%s (%s, %d/%d used).Free() = %d, want %d", w.node, w.state, w.used, w.total, f, w.free)
		}
	}
}

func checkVersionPartitions(t *testing.T, vc versionCase) {
	out := readVersionFixture(t, vc.version, "sinfo-partitions.txt")
	for _, w := range vc.partitions {
		// sinfo -p PART prints that partition's line only; the parser must
		// pick the right line out of the full listing as well.
		d, unlimited, err := slurm.ParsePartitionMaxTime([]byte(out), w.partition)
		if err != nil || d != w.max || unlimited != w.unlimited {
			t.Errorf("ParsePartitionMaxTime(%q) = %v, %v, %v; want %v, %v", w.partition, d, unlimited, err, w.max, w.unlimited)
		}
	}
	r := slurmtest.NewRunner(t)
	r.Register([]string{"sinfo", "-h", "-o", "%P|%l"}, out, nil)
	d, unlimited, err := slurm.New(r, versionProgs).MaxTime(context.Background(), "")
	if w := vc.partitions[0]; err != nil || d != w.max || unlimited != w.unlimited {
		t.Errorf("MaxTime(default) = %v, %v, %v; want %v, %v", d, unlimited, err, w.max, w.unlimited)
	}
}

func checkVersionNodeAddr(t *testing.T, vc versionCase) {
	out := readVersionFixture(t, vc.version, "scontrol-show-node.txt")
	for node, want := range vc.nodeAddrs {
		r := slurmtest.NewRunner(t)
		r.Register([]string{"scontrol", "show", "node", "-o", node}, out, nil)
		addr, err := slurm.New(r, versionProgs).NodeAddr(context.Background(), node)
		if err != nil || addr != want {
			t.Errorf("NodeAddr(%s) = %q, %v; want %q", node, addr, err, want)
		}
	}
}

func checkVersionPing(t *testing.T, vc versionCase) {
	argv := []string{"scontrol", "ping"}
	for name, ok := range vc.pings {
		out := readVersionFixture(t, vc.version, name)
		var runErr error
		if !strings.Contains(out, " is UP") {
			// scontrol exits 1 when no controller answers.
			runErr = &slurm.CmdError{Args: argv, Err: errors.New("exit status 1")}
		}
		r := slurmtest.NewRunner(t)
		r.Register(argv, out, runErr)
		if err := slurm.New(r, versionProgs).Ping(context.Background()); (err == nil) != ok {
			t.Errorf("%s: Ping = %v, want ok=%v", name, err, ok)
		}
	}
}

// TestVersionFixturesCovered keeps fixtures and tables in step: every release
// directory has a case, and every file in it is checked.
func TestVersionFixturesCovered(t *testing.T) {
	t.Parallel()
	cases := map[string]versionCase{}
	for _, vc := range versionCases() {
		cases[vc.version] = vc
	}
	entries, err := os.ReadDir(versionsDir)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	for _, dir := range dirs {
		vc, ok := cases[dir]
		if !ok {
			t.Errorf("%s/%s has no case in versionCases", versionsDir, dir)
			continue
		}
		covered := []string{"squeue.txt", "sbatch.txt", "sinfo-nodes.txt", "sinfo-partitions.txt", "scontrol-show-node.txt"}
		for name := range vc.pings {
			covered = append(covered, name)
		}
		files, err := os.ReadDir(filepath.Join(versionsDir, dir))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range files {
			names = append(names, f.Name())
		}
		slices.Sort(names)
		slices.Sort(covered)
		if !slices.Equal(names, covered) {
			t.Errorf("%s: files %v, checked %v", dir, names, covered)
		}
	}
	for v := range cases {
		if !slices.Contains(dirs, v) {
			t.Errorf("case %s has no directory under %s", v, versionsDir)
		}
	}
}
