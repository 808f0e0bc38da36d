package slurm_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/slurm"
)

const (
	minute = time.Minute
	hour   = time.Hour
	day    = 24 * time.Hour
)

func TestParseJobs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		out  string
		want []scheduler.Job
	}{
		{
			name: "empty",
			out:  "",
		},
		{
			name: "pending for resources",
			out:  "5|gpu5|alice|PENDING|Resources||gres:gpu:1|0:00|UNLIMITED|UNLIMITED\n",
			want: []scheduler.Job{{ID: "5", Name: "gpu5", User: "alice", State: scheduler.Pending, Reason: "Resources",
				GPUs: 1, Unlimited: true}},
		},
		{
			name: "running plain job with a day-long limit",
			out:  "20|ray-head|root|RUNNING|None|node1|gres:gpu:2|1:02:03|364-23:59:58|365-00:00:00\n",
			want: []scheduler.Job{{ID: "20", Name: "ray-head", User: "root", State: scheduler.Running, Node: "node1",
				GPUs: 2, Elapsed: hour + 2*minute + 3*time.Second,
				TimeLeft:  364*day + 23*hour + 59*minute + 58*time.Second,
				TimeLimit: 365 * day}},
		},
		{
			name: "array tasks with -r, gres/gpu form of 23.02",
			out: "22_2|w|bob|PENDING|Dependency||gres/gpu:1|0:00|1-02:03:00|1-02:03:00\n" +
				"22_0|w|bob|RUNNING|None|node3|gres/gpu:1|0:02|1-02:02:58|1-02:03:00\n",
			want: []scheduler.Job{
				{ID: "22_2", ArrayJobID: "22", ArrayTaskID: "2", Name: "w", User: "bob", State: scheduler.Pending,
					Reason: "Dependency", GPUs: 1, TimeLeft: day + 2*hour + 3*minute, TimeLimit: day + 2*hour + 3*minute},
				{ID: "22_0", ArrayJobID: "22", ArrayTaskID: "0", Name: "w", User: "bob", State: scheduler.Running,
					Node: "node3", GPUs: 1, Elapsed: 2 * time.Second,
					TimeLeft: day + 2*hour + 2*minute + 58*time.Second, TimeLimit: day + 2*hour + 3*minute},
			},
		},
		{
			name: "folded pending array record expands, concurrency limit dropped",
			out:  "7_[2-3,5,9-10%4]|w|bob|PENDING|JobArrayTaskLimit||gres:gpu:a100:2|0:00|5:00|5:00\n",
			want: func() []scheduler.Job {
				var js []scheduler.Job
				for _, task := range []string{"2", "3", "5", "9", "10"} {
					js = append(js, scheduler.Job{ID: "7_" + task, ArrayJobID: "7", ArrayTaskID: task, Name: "w",
						User: "bob", State: scheduler.Pending, Reason: "JobArrayTaskLimit", GPUs: 2,
						TimeLeft: 5 * minute, TimeLimit: 5 * minute})
				}
				return js
			}(),
		},
		{
			name: "folded single task",
			out:  "7_[2]|w|bob|PENDING|BeginTime||N/A|0:00|NOT_SET|NOT_SET\n",
			want: []scheduler.Job{{ID: "7_2", ArrayJobID: "7", ArrayTaskID: "2", Name: "w", User: "bob",
				State: scheduler.Pending, Reason: "BeginTime", Unlimited: true}},
		},
		{
			name: "overran its limit: time left INVALID",
			out:  "9|x|u|COMPLETING|None|node2|N/A|10:05|INVALID|10:00\n",
			want: []scheduler.Job{{ID: "9", Name: "x", User: "u", State: scheduler.Completing, Node: "node2",
				Elapsed: 10*minute + 5*time.Second, TimeLimit: 10 * minute}},
		},
		{
			name: "configuring multi-node job, other gres alongside",
			out:  "11|x|u|CONFIGURING|None|node[1-2]|gres:shard:1,gres:gpu:4|0:00|30:00|30:00\n",
			want: []scheduler.Job{{ID: "11", Name: "x", User: "u", State: scheduler.Configuring, Node: "node[1-2]",
				GPUs: 4, TimeLeft: 30 * minute, TimeLimit: 30 * minute}},
		},
		{
			name: "state with trailing words, heterogeneous job id, CRLF, blank lines",
			out:  "\r\n12+1|x|u|CANCELLED by 0|None|node1|N/A|0:07|UNLIMITED|UNLIMITED\r\n\n",
			want: []scheduler.Job{{ID: "12+1", Name: "x", User: "u", State: scheduler.Cancelled, Node: "node1",
				Elapsed: 7 * time.Second, Unlimited: true}},
		},
		{
			name: "unknown state kept, '|' in a foreign job name",
			out:  "13|a|b|u|SOMETHING_NEW|None||N/A|0:00|1:00|1:00\n",
			want: []scheduler.Job{{ID: "13", Name: "a|b", User: "u", State: "SOMETHING_NEW",
				TimeLeft: minute, TimeLimit: minute}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := slurm.ParseJobs([]byte(tt.out))
			if err != nil {
				t.Fatalf("ParseJobs: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseJobs =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseJobsEveryState(t *testing.T) {
	t.Parallel()
	states := []scheduler.JobState{
		scheduler.Pending, scheduler.Running, scheduler.Suspended, scheduler.Completed, scheduler.Cancelled, scheduler.Failed,
		scheduler.Timeout, scheduler.NodeFail, scheduler.Preempted, scheduler.BootFail, scheduler.Deadline, scheduler.OutOfMemory,
		scheduler.Completing, scheduler.StageOut, scheduler.Configuring, scheduler.Resizing, scheduler.Requeued, scheduler.RequeueFed,
		scheduler.RequeueHold, scheduler.SpecialExit, scheduler.Stopped, scheduler.Revoked, scheduler.ResvDelHold, scheduler.Signaling,
	}
	var out strings.Builder
	for _, s := range states {
		out.WriteString("1|n|u|" + string(s) + "|None||N/A|0:00|UNLIMITED|UNLIMITED\n")
	}
	jobs, err := slurm.ParseJobs([]byte(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		if j.State != states[i] {
			t.Errorf("line %d: state %q, want %q", i, j.State, states[i])
		}
	}
}

func TestParseJobsErrors(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		"5|gpu5|PENDING||gres:gpu:1|Resources|0:00|UNLIMITED", // too few fields
		"|n|u|PENDING|None||N/A|0:00|1:00|1:00",               // no id
		"5|n|u||None||N/A|0:00|1:00|1:00",                     // no state
		"5|n|u|PENDING|None||N/A|soon|1:00|1:00",              // elapsed
		"5|n|u|PENDING|None||N/A|0:00|1:00|1h",                // limit
		"5|n|u|PENDING|None||N/A|0:00|-1:00|1:00",             // time left
		"x_1|n|u|PENDING|None||N/A|0:00|1:00|1:00",            // array id
		"7_[3-1]|n|u|PENDING|None||N/A|0:00|1:00|1:00",        // reversed range
		"7_[1,3,5,...]|n|u|PENDING|None||N/A|0:00|1:00|1:00",  // SLURM_BITSTR_LEN truncation
		"7_[0-4000000]|n|u|PENDING|None||N/A|0:00|1:00|1:00",  // absurd expansion
		"7_1-3|n|u|PENDING|None||N/A|0:00|1:00|1:00",          // unbracketed list
	} {
		_, err := slurm.ParseJobs([]byte("1|ok|u|RUNNING|None|node1|N/A|0:00|1:00|1:00\n" + line + "\n"))
		if err == nil {
			t.Errorf("ParseJobs(%q) succeeded, want error", line)
		} else if !strings.Contains(err.Error(), line) {
			t.Errorf("ParseJobs(%q) error %q does not name the line", line, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		want      time.Duration
		unlimited bool
	}{
		{"0:00", 0, false},
		{"0:59", 59 * time.Second, false},
		{"1:02", minute + 2*time.Second, false},
		{"59:59", 59*minute + 59*time.Second, false},
		{"1:02:03", hour + 2*minute + 3*time.Second, false},
		{"23:59:59", 23*hour + 59*minute + 59*time.Second, false},
		{"2-01:02:03", 2*day + hour + 2*minute + 3*time.Second, false},
		{"365-00:00:00", 365 * day, false},
		{"2:01:02:03", 2*day + hour + 2*minute + 3*time.Second, false},
		{" 5:00 ", 5 * minute, false},
		{"UNLIMITED", 0, true},
		{"NOT_SET", 0, true},
		{"INVALID", 0, true},
		{"N/A", 0, true},
	}
	for _, tt := range tests {
		d, unlimited, err := slurm.ParseDuration(tt.in)
		if err != nil || d != tt.want || unlimited != tt.unlimited {
			t.Errorf("ParseDuration(%q) = %v, %v, %v; want %v, %v, nil", tt.in, d, unlimited, err, tt.want, tt.unlimited)
		}
	}
	for _, in := range []string{
		"", "5", "1h", "-1:00", "1:-1", "+1:00", "1:2:3:4:5", "1-02:03", "1-2", "1--2:3:4", "a:bc",
		"1-00:00:00:00", "999999999999-00:00:00", "99999999999999999999:00",
	} {
		if d, u, err := slurm.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, %v, nil; want error", in, d, u)
		}
	}
}

func TestParseGPUs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
	}{
		{"gres:gpu:2", 2},
		{"gres/gpu:2", 2},
		{"gres:gpu:a100:2", 2},
		{"gres/gpu:a100=2", 2},
		{"gres/gpu=3", 3},
		{"gpu:2", 2},
		{"gpu:a100:4(S:0-1)", 4},
		{"gpu:2(IDX:0-1)", 2},
		{"gpu:0(IDX:N/A)", 0},
		{"gpu:(null):3(IDX:0-2)", 3}, // gres.conf without Type=: NULL type printed as "(null)"
		{"gpu:(null):0(IDX:N/A)", 0},
		{"gpu:a100:1(IDX:0),gpu:(null):2(IDX:1-2)", 3},
		{"gpu:a100:1(IDX:0),gpu:v100:2(IDX:1-2)", 3},
		{"gpu:2(S:0,1),shard:8", 2},
		{"gres:shard:1,gres:gpu:4", 4},
		{"gres:gpu", 1},
		{"gres:gpu:a100", 1},
		{"gres:gpumem:4", 0},
		{"gres:mps:100", 0},
		{"N/A", 0},
		{"(null)", 0},
		{"", 0},
		{"gpu:99999999999", 0},
	}
	for _, tt := range tests {
		if got := slurm.ParseGPUs(tt.in); got != tt.want {
			t.Errorf("ParseGPUs(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestJobStateActiveStarted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state           scheduler.JobState
		active, started bool
	}{
		{scheduler.Pending, true, false},
		{scheduler.Configuring, true, true},
		{scheduler.Running, true, true},
		{scheduler.Completing, true, true},
		{scheduler.Suspended, true, true},
		{scheduler.Stopped, true, true},
		{scheduler.Resizing, true, true},
		{scheduler.Signaling, true, true},
		{scheduler.StageOut, true, false},
		{scheduler.Requeued, true, false},
		{scheduler.RequeueFed, true, false},
		{scheduler.RequeueHold, true, false},
		{scheduler.SpecialExit, true, false},
		{scheduler.ResvDelHold, true, false},
		{scheduler.Completed, false, false},
		{scheduler.Cancelled, false, false},
		{scheduler.Failed, false, false},
		{scheduler.Timeout, false, false},
		{scheduler.NodeFail, false, false},
		{scheduler.Preempted, false, false},
		{scheduler.OutOfMemory, false, false},
		{scheduler.BootFail, false, false},
		{scheduler.Deadline, false, false},
		{scheduler.Revoked, false, false},
		{"SOMETHING_NEW", false, false},
	}
	for _, tt := range tests {
		if got := tt.state.Active(); got != tt.active {
			t.Errorf("%s.Active() = %v, want %v", tt.state, got, tt.active)
		}
		if got := tt.state.Started(); got != tt.started {
			t.Errorf("%s.Started() = %v, want %v", tt.state, got, tt.started)
		}
	}
}

func TestParseNodeGPUs(t *testing.T) {
	t.Parallel()
	// As sinfo 22.05 prints nodeFormat, plus typed and unusual nodes.
	out := "node1|debug*|mixed|gpu:2|gpu:1\n" +
		"node2|debug*|idle|gpu:2|gpu:0\n" +
		"node3|debug*|allocated|gpu:2|gpu:2(IDX:0-1)\n" +
		"node3|long|allocated|gpu:2|gpu:2(IDX:0-1)\n" +
		"a100-1|gpu|mixed|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)\n" +
		"cpu1|cpu|idle|(null)|gpu:0\n" +
		"node4|debug*|drained|gpu:2|gpu:0\n" +
		"node5|debug*|draining|gpu:2|gpu:1\n" +
		"node6|debug*|down*|gpu:2|gpu:0\n" +
		"node7|debug*|idle*|gpu:2|gpu:0\n" +
		"node8|debug*|idle~|gpu:2|gpu:0\n" +
		"node9|debug*|idle%|gpu:2|gpu:0\n" +
		"node10|debug*|maint|gpu:2|gpu:0\n" +
		"node11|debug*|idle+drain|gpu:2|gpu:0\n" +
		"node12|debug*|idle+cloud|gpu:2|gpu:0\n"
	got, err := slurm.ParseNodeGPUs([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		node scheduler.NodeGPUs
		free int
	}{
		{scheduler.NodeGPUs{Node: "node1", Partition: "debug", State: "mixed", Total: 2, Used: 1}, 1},
		{scheduler.NodeGPUs{Node: "node2", Partition: "debug", State: "idle", Total: 2, Used: 0}, 2},
		{scheduler.NodeGPUs{Node: "node3", Partition: "debug", State: "allocated", Total: 2, Used: 2}, 0},
		{scheduler.NodeGPUs{Node: "node3", Partition: "long", State: "allocated", Total: 2, Used: 2}, 0},
		{scheduler.NodeGPUs{Node: "a100-1", Partition: "gpu", State: "mixed", Total: 4, Used: 1}, 3},
		{scheduler.NodeGPUs{Node: "cpu1", Partition: "cpu", State: "idle", Total: 0, Used: 0}, 0},
		{scheduler.NodeGPUs{Node: "node4", Partition: "debug", State: "drained", Total: 2}, 0},
		{scheduler.NodeGPUs{Node: "node5", Partition: "debug", State: "draining", Total: 2, Used: 1}, 0},
		{scheduler.NodeGPUs{Node: "node6", Partition: "debug", State: "down*", Total: 2}, 0},
		{scheduler.NodeGPUs{Node: "node7", Partition: "debug", State: "idle*", Total: 2}, 0},
		{scheduler.NodeGPUs{Node: "node8", Partition: "debug", State: "idle~", Total: 2}, 2},
		{scheduler.NodeGPUs{Node: "node9", Partition: "debug", State: "idle%", Total: 2}, 0},
		{scheduler.NodeGPUs{Node: "node10", Partition: "debug", State: "maint", Total: 2}, 0},
		{scheduler.NodeGPUs{Node: "node11", Partition: "debug", State: "idle+drain", Total: 2}, 0},
		{scheduler.NodeGPUs{Node: "node12", Partition: "debug", State: "idle+cloud", Total: 2}, 2},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d nodes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i] != w.node {
			t.Errorf("node %d = %+v, want %+v", i, got[i], w.node)
		}
		if f := got[i].Free(); f != w.free {
			t.Errorf("%s (%s).Free() = %d, want %d", got[i].Node, got[i].State, f, w.free)
		}
	}

	for _, bad := range []string{"node1|debug|idle|gpu:2", "|debug|idle|gpu:2|gpu:0", "a|b|c|d|e|f"} {
		if _, err := slurm.ParseNodeGPUs([]byte(bad + "\n")); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseNodeGPUs(%q) error = %v, want one naming the line", bad, err)
		}
	}
}

func TestParseNodeAddr(t *testing.T) {
	t.Parallel()
	// Real `scontrol show node -o node2` output from SLURM 22.05.
	out := "NodeName=node2 Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 CPUEfctv=4 CPUTot=4 CPULoad=0.30 " +
		"AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 NodeAddr=127.0.0.12 NodeHostName=vm " +
		"Port=17002 Version=22.05.8 OS=Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=6000 " +
		"State=IDLE Reason=NodeAddr=bogus [root@2026-11-25T22:07:35]\n"
	if addr, err := slurm.ParseNodeAddr([]byte(out), "node2"); err != nil || addr != "127.0.0.12" {
		t.Errorf("ParseNodeAddr = %q, %v; want 127.0.0.12", addr, err)
	}
	if _, err := slurm.ParseNodeAddr([]byte(out), "node20"); err == nil {
		t.Error("ParseNodeAddr found node20 in node2's line")
	}
	if _, err := slurm.ParseNodeAddr([]byte("NodeName=node2 Arch=x86_64\n"), "node2"); err == nil {
		t.Error("ParseNodeAddr succeeded without NodeAddr=")
	}
}
