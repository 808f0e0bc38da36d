//go:build e2e

package raygcs_test

// Tests against a real Ray (SRAYBATCH_VENV, Ray >= 2.52): a head with token
// auth on this machine, a driver that leaves every kind of demand pending,
// and a second raylet that is drained. They skip without SRAYBATCH_VENV and
// fail instead under CI=true.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/testci"
	"github.com/sraybatch/sraybatch/raynode"
)

// nodeIDBytes is the length of a Ray NodeID.
const nodeIDBytes = 28

// skipOutsideCI skips a test that needs real Ray, except under CI=true,
// where the same reason fails it: CI must never pass by skipping.
func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	testci.SkipOutsideCI(t, format, args...)
}

// needRay returns the Ray venv, or skips.
func needRay(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		skipOutsideCI(t, "test against real Ray: skipped with -short")
	}
	venv := os.Getenv("SRAYBATCH_VENV")
	if venv == "" {
		skipOutsideCI(t, "test against real Ray: set SRAYBATCH_VENV to a venv with Ray >= 2.52")
	}
	if _, err := os.Stat(filepath.Join(venv, "bin", "ray")); err != nil {
		skipOutsideCI(t, "test against real Ray: no ray in SRAYBATCH_VENV: %v", err)
	}
	return venv
}

// rayEnv is what the Ray processes of one test share.
type rayEnv struct {
	venv, dir string
	token     string
	env       []string // a clean environment: no RAY_* of whoever runs the tests
	usedPorts map[int]bool
}

// newRayEnv makes a private 0700 directory (Ray makes its own dirs 0777), a
// token file and the environment every process of the test gets. The marker
// variable lets cleanup find every process Ray started for this test, worker
// processes included, which leave the process group of `ray start`.
func newRayEnv(t *testing.T, venv string) *rayEnv {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "rgcs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept %s for its logs", dir)
			return
		}
		os.RemoveAll(dir)
	})
	tok := make([]byte, 32)
	rand.Read(tok)
	e := &rayEnv{venv: venv, dir: dir, token: hex.EncodeToString(tok), usedPorts: map[int]bool{}}
	tokenFile := filepath.Join(dir, "token")
	// A trailing newline, as editors and `echo` write: Dial must cope.
	if err := os.WriteFile(tokenFile, []byte(e.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.env = []string{
		"PATH=" + filepath.Join(venv, "bin") + ":/usr/bin:/bin",
		"HOME=" + dir, // no ~/.ray/auth_token of the user is found
		"RAY_USAGE_STATS_ENABLED=0",
		"RAY_AUTH_MODE=token",
		"RAY_AUTH_TOKEN_PATH=" + tokenFile,
		"RAYGCS_TEST_MARK=" + dir,
	}
	t.Cleanup(func() { killMarked(dir) })
	return e
}

// rayProc is one process the test started in its own process group.
type rayProc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
	exited time.Time
}

func (e *rayEnv) start(t *testing.T, name string, extraEnv []string, argv ...string) *rayProc {
	t.Helper()
	p := &rayProc{name: name, log: filepath.Join(e.dir, name+".log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Dir = e.dir
	p.cmd.Env = append(slices.Clone(e.env), extraEnv...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.exited = time.Now()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log (tail):\n%s", name, tail(b, 3000))
		}
	})
	return p
}

// failIfExited fails t when the process has exited: a wait on its output
// would be in vain.
func (p *rayProc) failIfExited(t *testing.T, what string) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("%s exited: %v", what, p.cmd.ProcessState)
	default:
	}
}

// stop ends the process group gracefully, then by force.
func (p *rayProc) stop() {
	pid := p.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-p.done
}

// killMarked kills every process whose environment carries this test's
// marker: Ray's worker processes live in process groups of their own and
// outlive a killed raylet. Never `ray stop`, which kills every Ray on the host.
func killMarked(dir string) {
	mark := []byte("\x00RAYGCS_TEST_MARK=" + dir + "\x00")
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if err == nil && bytes.Contains(append([]byte{0}, env...), mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// startNode runs `ray start --block` for a head (gcs == "") or a worker of
// gcs, on ports of its own.
func (e *rayEnv) startNode(t *testing.T, name, gcs string, params map[string]string) (*rayProc, raynode.Ports) {
	t.Helper()
	ports, err := raynode.AllocatePorts(raynode.DefaultPortRange, func(p int) bool {
		return !e.usedPorts[p] && raynode.PortFree(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports.All() {
		e.usedPorts[p] = true
	}
	head := gcs == ""
	params["temp-dir"] = filepath.Join(e.dir, name)
	params["object-store-memory"] = "80000000"
	ports.Params(head, params)
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	argv := []string{filepath.Join(e.venv, "bin", "ray"), "start", "--block", "--disable-usage-stats"}
	if head {
		argv = append(argv, "--head")
	} else {
		argv = append(argv, "--address="+gcs)
	}
	for _, k := range keys {
		argv = append(argv, "--"+k+"="+params[k])
	}
	return e.start(t, name, ports.Env(head), argv...), ports
}

// gcsAddr reads the address the head's GCS listens on from its log line
// "ray start --address='IP:PORT'", since Ray picks the IP.
func gcsAddr(t *testing.T, head *rayProc, port int, within time.Duration) string {
	t.Helper()
	suffix := ":" + strconv.Itoa(port)
	var addr string
	testci.Eventually(t, "the GCS address in the head's log", within, 250*time.Millisecond, func() bool {
		b, _ := os.ReadFile(head.log)
		if _, rest, ok := bytes.Cut(b, []byte("--address='")); ok {
			if a, _, ok := bytes.Cut(rest, []byte("'")); ok && strings.HasSuffix(string(a), suffix) {
				addr = string(a)
				return true
			}
		}
		head.failIfExited(t, "ray start --head")
		return false
	})
	return addr
}

// pollUntil calls ClusterState until ok accepts a state, or fails after within.
func pollUntil(t *testing.T, c *raygcs.Client, within time.Duration, what string, ok func(raygcs.ClusterState) bool) raygcs.ClusterState {
	t.Helper()
	var s raygcs.ClusterState
	testci.EventuallyErr(t, what, within, 300*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if s, err = c.ClusterState(ctx); err == nil && ok(s) {
			return nil
		}
		b, _ := json.MarshalIndent(s, "", " ")
		return fmt.Errorf("last error %v; last state:\n%s", err, b)
	})
	return s
}

func sameResources(a, b map[string]float64) bool {
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

func findCount(rcs []raygcs.RequestCount, shape map[string]float64) (raygcs.RequestCount, bool) {
	for _, rc := range rcs {
		if sameResources(rc.Request.Resources, shape) {
			return rc, true
		}
	}
	return raygcs.RequestCount{}, false
}

func findGang(gangs []raygcs.Gang, id string) (raygcs.Gang, bool) {
	for _, g := range gangs {
		if g.ID == id {
			return g, true
		}
	}
	return raygcs.Gang{}, false
}

func findNode(s raygcs.ClusterState, id string) (raygcs.Node, bool) {
	for _, n := range s.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return raygcs.Node{}, false
}

// driverScript leaves every kind of demand pending on a head with 1 CPU and
// 1 GPU: a request_resources floor, tasks beyond the one GPU, an actor no
// node can hold, and two placement groups that cannot be placed.
const driverScript = `
import time, ray, ray.autoscaler.sdk
from ray.util.placement_group import placement_group
ray.init()
ray.autoscaler.sdk.request_resources(bundles=[{"GPU": 1}] * 3)

@ray.remote(num_gpus=1, num_cpus=0)
def hold():
    time.sleep(3600)

@ray.remote(num_gpus=2, num_cpus=0)
class Big:
    pass

tasks = [hold.remote() for _ in range(3)]
big = Big.remote()
spread = placement_group([{"GPU": 1}] * 2, strategy="STRICT_SPREAD")
pack = placement_group([{"GPU": 1, "CPU": 1}, {"GPU": 1}], strategy="PACK")
print("READY", spread.id.hex(), pack.id.hex(), flush=True)
time.sleep(3600)
`

func TestRealRay(t *testing.T) {
	venv := needRay(t)
	e := newRayEnv(t, venv)

	t0 := time.Now()
	head, headPorts := e.startNode(t, "head", "", map[string]string{
		"num-cpus": "1", "num-gpus": "1", "include-dashboard": "false",
	})
	addr := gcsAddr(t, head, headPorts.GCS, 90*time.Second)
	c, err := raygcs.Dial(addr, e.token+"\n")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := pollUntil(t, c, 90*time.Second, "the head node", func(s raygcs.ClusterState) bool { return len(s.Nodes) > 0 })
	t.Logf("GCS at %s answered %v after ray start", addr, time.Since(t0).Round(time.Millisecond))
	headNode := s.Nodes[0]
	if !headNode.IsHead() || !headNode.Status.Alive() || headNode.Total["CPU"] != 1 || headNode.Total["GPU"] != 1 || headNode.IP == "" {
		t.Fatalf("head node = %+v", headNode)
	}

	t.Run("auth", func(t *testing.T) {
		for name, token := range map[string]string{"no token": "", "wrong token": strings.Repeat("ab", 32)} {
			bad, err := raygcs.Dial(addr, token)
			if err != nil {
				t.Fatal(err)
			}
			_, err = bad.ClusterState(context.Background())
			bad.Close()
			if !errors.Is(err, raygcs.ErrUnauthenticated) {
				t.Errorf("%s: ClusterState error = %v, want ErrUnauthenticated", name, err)
			} else {
				t.Logf("%s: %v", name, err)
			}
		}
	})

	// The driver lives as long as the cluster: the drain tests need the head busy.
	driverPy := filepath.Join(e.dir, "driver.py")
	if err := os.WriteFile(driverPy, []byte(driverScript), 0o600); err != nil {
		t.Fatal(err)
	}
	driver := e.start(t, "driver", []string{"RAY_ADDRESS=" + addr}, filepath.Join(venv, "bin", "python"), driverPy)

	t.Run("demand", func(t *testing.T) {
		var spreadID, packID string
		testci.Eventually(t, "driver READY", 90*time.Second, 250*time.Millisecond, func() bool {
			b, _ := os.ReadFile(driver.log)
			if _, rest, ok := bytes.Cut(b, []byte("READY ")); ok {
				if f := strings.Fields(string(rest)); len(f) >= 2 {
					spreadID, packID = f[0], f[1]
					return true
				}
			}
			driver.failIfExited(t, "driver before READY")
			return false
		})
		ready := time.Now()
		gpu1, gpu2 := map[string]float64{"GPU": 1}, map[string]float64{"GPU": 2}
		s := pollUntil(t, c, 60*time.Second, "every kind of demand", func(s raygcs.ClusterState) bool {
			rc1, ok1 := findCount(s.Pending, gpu1)
			_, ok2 := findCount(s.Pending, gpu2)
			_, ok3 := findGang(s.Gangs, spreadID)
			_, ok4 := findGang(s.Gangs, packID)
			_, ok5 := findCount(s.Constraints, gpu1)
			// The head's activity can come a report after the demand
			// (seen once: demand 2 ms after READY, no activity yet).
			head, _ := findNode(s, headNode.ID)
			return ok1 && rc1.Count >= 2 && ok2 && ok3 && ok4 && ok5 && len(head.Activity) > 0
		})
		t.Logf("all demand seen %v after the driver made it", time.Since(ready).Round(time.Millisecond))

		if rc, _ := findCount(s.Pending, gpu1); rc.Count != 2 {
			t.Errorf("pending {GPU: 1} count %d, want 2 (3 tasks, 1 running on the GPU)", rc.Count)
		}
		if rc, _ := findCount(s.Pending, gpu2); rc.Count != 1 {
			t.Errorf("pending {GPU: 2} count %d, want 1", rc.Count)
		}
		spread, _ := findGang(s.Gangs, spreadID)
		if spread.Strategy != raygcs.StrategyStrictSpread || spread.State != "PENDING" || len(spread.Bundles) != 2 ||
			!sameResources(spread.Bundles[0].Resources, gpu1) || len(spread.Bundles[0].AntiAffinity) != 1 {
			t.Errorf("STRICT_SPREAD group = %+v", spread)
		}
		pack, _ := findGang(s.Gangs, packID)
		if pack.Strategy != raygcs.StrategyPack || len(pack.Bundles) != 2 ||
			!sameResources(pack.Bundles[0].Resources, map[string]float64{"GPU": 1, "CPU": 1}) {
			t.Errorf("PACK group = %+v", pack)
		}
		if rc, _ := findCount(s.Constraints, gpu1); rc.Count != 3 || len(s.Constraints) != 1 {
			t.Errorf("constraints = %+v, want 3 x {GPU: 1}", s.Constraints)
		}
		n, _ := findNode(s, headNode.ID)
		if n.Status != raygcs.NodeRunning || n.Available["GPU"] != 0 || len(n.Activity) == 0 {
			t.Errorf("busy head = %+v", n)
		}
		t.Logf("spread group details %q, pack group details %q", spread.Details, pack.Details)

		// Latency of one ClusterState (two GCS calls) on a cluster with demand.
		var lat []time.Duration
		for range 20 {
			t0 := time.Now()
			if _, err := c.ClusterState(context.Background()); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		t.Logf("ClusterState latency: min %v, median %v, max %v", lat[0], lat[len(lat)/2], lat[len(lat)-1])
	})

	t.Run("footprint", func(t *testing.T) {
		// A poll loop in a process of its own (this test binary, re-executed),
		// so its peak RSS and CPU time are the client's and little else.
		const every, runFor = 2 * time.Second, 12 * time.Second
		cmd := exec.Command(os.Args[0], "-test.run=^TestPollLoopHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "RAYGCS_POLL_ADDR="+addr, "RAYGCS_POLL_TOKEN="+e.token,
			"RAYGCS_POLL_EVERY="+every.String(), "RAYGCS_POLL_FOR="+runFor.String())
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		wall := time.Since(t0)
		if err != nil {
			t.Fatalf("poll loop: %v\n%s", err, out)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		rssMB := float64(ru.Maxrss) / 1024
		pct := 100 * cpu.Seconds() / wall.Seconds()
		t.Logf("poll loop every %v for %v: peak RSS %.1f MB, CPU %v (%.2f%% of %v wall); %s",
			every, runFor, rssMB, cpu.Round(time.Millisecond), pct, wall.Round(time.Millisecond), strings.TrimSpace(string(out)))
		if rssMB >= 30 {
			t.Errorf("peak RSS %.1f MB, want < 30 MB", rssMB)
		}
		if pct >= 1 {
			t.Errorf("CPU %.2f%%, want < 1%%", pct)
		}
	})

	t.Run("drain unknown node", func(t *testing.T) {
		id := make([]byte, nodeIDBytes)
		rand.Read(id)
		accepted, rejection, err := c.Drain(context.Background(), hex.EncodeToString(id), raygcs.DrainIdleTermination, "raygcs test", time.Time{})
		t.Logf("drain of an unknown node: accepted %v, rejection %q, err %v", accepted, rejection, err)
		if err != nil || !accepted {
			t.Errorf("Ray 2.60 accepts a drain of a node it does not know (counts it as drained); got accepted %v, %q, %v", accepted, rejection, err)
		}
		// Ids the GCS would abort on never leave the client.
		for _, bad := range []string{"", "abcd", hex.EncodeToString(id) + "00", strings.Repeat("zz", nodeIDBytes)} {
			if _, _, err := c.Drain(context.Background(), bad, raygcs.DrainIdleTermination, "", time.Time{}); err == nil {
				t.Errorf("Drain(%q) sent", bad)
			}
		}
		if _, _, err := c.Drain(context.Background(), hex.EncodeToString(id), raygcs.DrainReason(0), "", time.Time{}); err == nil {
			t.Error("Drain with reason 0 sent")
		}
		if _, err := c.ClusterState(context.Background()); err != nil {
			t.Fatalf("GCS after the drains: %v", err)
		}
	})

	t.Run("drain busy head", func(t *testing.T) {
		accepted, rejection, err := c.Drain(context.Background(), headNode.ID, raygcs.DrainIdleTermination, "raygcs test", time.Time{})
		t.Logf("idle-termination drain of the busy head: accepted %v, rejection %q, err %v", accepted, rejection, err)
		if err != nil || accepted || !strings.Contains(rejection, "no longer idle") {
			t.Errorf("got accepted %v, rejection %q, err %v; want a rejection", accepted, rejection, err)
		}
	})

	t.Run("drain idle worker", func(t *testing.T) {
		known := map[string]bool{}
		for _, n := range s.Nodes {
			known[n.ID] = true
		}
		t0 := time.Now()
		worker, _ := e.startNode(t, "worker", addr, map[string]string{"num-cpus": "1", "num-gpus": "0"})
		var workerID string
		s := pollUntil(t, c, 90*time.Second, "the second raylet, idle", func(s raygcs.ClusterState) bool {
			for _, n := range s.Nodes {
				if !known[n.ID] && n.Status == raygcs.NodeIdle {
					workerID = n.ID
					return true
				}
			}
			return false
		})
		w, _ := findNode(s, workerID)
		t.Logf("worker %s idle %v after ray start (IdleFor %v, total %v)", workerID, time.Since(t0).Round(time.Millisecond), w.IdleFor, w.Total)
		if w.IsHead() || w.Total["GPU"] != 0 || w.Total["CPU"] != 1 {
			t.Errorf("worker = %+v", w)
		}

		rayletPID := findRaylet(worker.cmd.Process.Pid)
		if rayletPID == 0 {
			t.Fatal("no raylet in the worker's process group")
		}
		deadline := time.Now().Add(10 * time.Minute)
		accepted, rejection, err := c.Drain(context.Background(), workerID, raygcs.DrainIdleTermination, "raygcs test: idle", deadline)
		drained := time.Now()
		if err != nil || !accepted {
			t.Fatalf("drain of the idle worker: accepted %v, rejection %q, err %v", accepted, rejection, err)
		}
		sawDraining := false
		pollUntil(t, c, 90*time.Second, "the drained worker DEAD", func(s raygcs.ClusterState) bool {
			n, _ := findNode(s, workerID)
			sawDraining = sawDraining || n.Status == raygcs.NodeDraining
			return n.Status == raygcs.NodeDead
		})
		dead := time.Since(drained)
		if !testci.Poll(60*time.Second-time.Since(drained), 100*time.Millisecond, func() bool { return !running(rayletPID) }) {
			t.Fatalf("worker DEAD in GCS after %v, but its raylet still runs 60s after the drain", dead.Round(time.Millisecond))
		}
		rayletGone := time.Since(drained)
		// Ray 2.60's `ray start --block` exits only when a child dies with an
		// unexpected code; a drained raylet exits 0, so it may wait on.
		select {
		case <-worker.done:
			t.Logf("ray start --block exited by itself %v after the drain (%v)", worker.exited.Sub(drained).Round(time.Millisecond), worker.cmd.ProcessState)
		case <-time.After(10 * time.Second):
			t.Logf("ray start --block still runs %v after the drain, its raylet gone: whoever runs it must stop it", time.Since(drained).Round(time.Second))
		}
		t.Logf("drain accepted; worker DEAD in GCS after %v (DRAINING seen: %v), its raylet exited after %v",
			dead.Round(time.Millisecond), sawDraining, rayletGone.Round(time.Millisecond))
	})
}

// findRaylet returns the pid of the raylet in process group pgid, or 0.
func findRaylet(pgid int) int {
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		comm, state, group := procStat(pid)
		if comm == "raylet" && state != "Z" && group == pgid {
			return pid
		}
	}
	return 0
}

// running reports whether pid is alive and not a zombie.
func running(pid int) bool {
	_, state, _ := procStat(pid)
	return state != "" && state != "Z" && state != "X"
}

// procStat reads a process's command name, state and process group.
func procStat(pid int) (comm, state string, pgid int) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", "", 0
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", "", 0
	}
	f := strings.Fields(string(b[end+1:])) // state ppid pgrp ...
	if len(f) < 3 {
		return "", "", 0
	}
	pgid, _ = strconv.Atoi(f[2])
	return string(b[open+1 : end]), f[0], pgid
}

// TestPollLoopHelper is the poll loop the footprint test measures; it runs
// only when re-executed by it.
func TestPollLoopHelper(t *testing.T) {
	addr := os.Getenv("RAYGCS_POLL_ADDR")
	if addr == "" {
		t.Skip("helper process for TestRealRay/footprint")
	}
	every, err1 := time.ParseDuration(os.Getenv("RAYGCS_POLL_EVERY"))
	runFor, err2 := time.ParseDuration(os.Getenv("RAYGCS_POLL_FOR"))
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	c, err := raygcs.Dial(addr, os.Getenv("RAYGCS_POLL_TOKEN"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	polls, nodes := 0, 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	stop := time.After(runFor)
	for {
		s, err := c.ClusterState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		polls, nodes = polls+1, len(s.Nodes)
		select {
		case <-stop:
			fmt.Printf("%d polls, %d nodes\n", polls, nodes)
			return
		case <-tick.C:
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
