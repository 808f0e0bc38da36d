//go:build e2e

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/proctree"
	"github.com/sraybatch/sraybatch/internal/testci"
)

// TestE2ESecurity attacks a real cluster the way a stranger on the same
// network would — without its token — and checks that Ray 2.60, as sraybatch
// starts it, refuses every way in; then that insecure and too-old-Ray
// clusters are flagged.
func TestE2ESecurity(t *testing.T) {
	e2eShare(t, 1)
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2esec", "--gpus-per-node", "1", "--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2esec") })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2esec")}
	head, ok, err := dir.Head()
	if err != nil || !ok {
		t.Fatalf("head.json: %v (published %v)", err, ok)
	}
	tokenBytes, err := os.ReadFile(dir.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenBytes))
	wrongToken := strings.Repeat("deadbeef", 8) // as long as a real one
	headLog := logTail(cluster.JobLog(filepath.Join(dir.Path, "logs"), "e2esec", cluster.RoleHead, head.Job), 1000)
	headIP := strings.Split(head.Address, ":")[0]

	t.Run("attacks", func(t *testing.T) {
		t.Run("a worker without the token cannot join", func(t *testing.T) {
			t.Parallel()
			rawWorkersCannotJoin(t, e, dir, head, token, wrongToken)
		})
		t.Run("GCS and client ports refuse a driver without the token", func(t *testing.T) {
			t.Parallel()
			m := regexp.MustCompile(`--ray-client-server-port=(\d+)`).FindStringSubmatch(headLog)
			if m == nil {
				t.Fatalf("no --ray-client-server-port in the head's log:\n%s", headLog)
			}
			driversRefused(t, e, headIP, head.Address, "ray://"+headIP+":"+m[1], token, wrongToken)
		})
		t.Run("the jobs API refuses a job without the token", func(t *testing.T) {
			t.Parallel()
			jobsAPIRefuses(t, head.Dashboard, token, wrongToken)
		})
		t.Run("the dashboard answers nothing useful without the token", func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"/api/v0/nodes", "/api/jobs/", "/api/version", "/nodes?view=summary", "/api/cluster_status"} {
				for _, c := range []struct {
					auth string
					want int
				}{{"", http.StatusUnauthorized}, {"Bearer " + wrongToken, http.StatusForbidden}, {"Basic Zm9vOmJhcg==", http.StatusForbidden}} {
					code, body := httpDo(t, http.MethodGet, head.Dashboard+path, c.auth, "")
					t.Logf("CHECK dashboard GET %s with Authorization %q: %d %s", path, redact(c.auth), code, oneLineBody(body))
					if code != c.want {
						t.Errorf("GET %s with Authorization %q: %d %s, want %d", path, redact(c.auth), code, body, c.want)
					}
				}
				if code, body := httpDo(t, http.MethodGet, head.Dashboard+path, "Bearer "+token, ""); code == http.StatusUnauthorized || code == http.StatusForbidden {
					t.Errorf("GET %s with the token: %d %s", path, code, body)
				}
			}
			// What stays open: a liveness probe and the UI's static files (the
			// UI then asks for the token); neither tells anything about the cluster.
			for _, path := range []string{"/api/gcs_healthz", "/"} {
				code, body := httpDo(t, http.MethodGet, head.Dashboard+path, "", "")
				t.Logf("CHECK dashboard GET %s without a token: %d %s (open by Ray's design)", path, code, oneLineBody(body))
			}
			if m := regexp.MustCompile(`--metrics-export-port=(\d+)`).FindStringSubmatch(headLog); m != nil {
				// Reported, not asserted: the exporter starts some seconds after the head.
				var resp *http.Response
				var err error
				testci.Poll(15*time.Second, time.Second, func() bool {
					resp, err = httpClient.Get("http://" + headIP + ":" + m[1] + "/metrics")
					return err == nil
				})
				if err != nil {
					t.Logf("CHECK metrics export port %s: %v", m[1], err)
				} else {
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					t.Logf("CHECK metrics export port %s without a token: %d, %d bytes of Prometheus metrics (read-only; Ray does not authenticate it)", m[1], resp.StatusCode, n)
				}
			}
		})
		t.Run("status marks an insecure cluster insecure", func(t *testing.T) {
			t.Parallel()
			// Held: its head never starts, so no Ray is needed to read its spec.
			e.mustSray(t, "up", "--name", "e2esecins", "--insecure", "--gpus-per-node", "1", "--sbatch-arg=--hold")
			t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2esecins", "--timeout", "30s") })
			for name, want := range map[string]bool{"e2esecins": true, "e2esec": false} {
				r := e.mustSray(t, "status", "--cluster", name, "--output", "json")
				var raw struct {
					Cluster map[string]any `json:"cluster"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
					t.Fatal(err)
				}
				t.Logf("CHECK status --output json of %s: \"insecure\": %v", name, raw.Cluster["insecure"])
				if raw.Cluster["insecure"] != want {
					t.Errorf("cluster %s: \"insecure\" = %v, want %v", name, raw.Cluster["insecure"], want)
				}
			}
			if r := e.mustSray(t, "status", "--cluster", "e2esecins", "--output", "table"); !strings.Contains(r.stdout, "INSECURE") {
				t.Errorf("status table of an insecure cluster does not say INSECURE:\n%s", r.stdout)
			}
		})
		t.Run("an old Ray fails up unless --insecure", func(t *testing.T) {
			t.Parallel()
			// A stub is enough here: this tests sraybatch's version gate, not Ray.
			venv := filepath.Join(e.userDir(t, "old-ray"), "venv")
			stub := filepath.Join(venv, "bin", "ray")
			if err := os.MkdirAll(filepath.Dir(stub), 0o700); err != nil {
				t.Fatal(err)
			}
			script := "#!/bin/sh\ncase \"$1\" in\n--version) echo 'ray, version 2.40.0' ;;\nstart) exec sleep 300 ;;\n*) exit 1 ;;\nesac\n"
			if err := os.WriteFile(stub, []byte(script), 0o700); err != nil {
				t.Fatal(err)
			}
			e.user.give(t, venv)
			start := time.Now()
			r := e.sray(t, "up", "--name", "e2esecold", "--ray", stub, "--gpus-per-node", "0", "--wait", "--timeout", "60s")
			t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2esecold", "--timeout", "30s") })
			t.Logf("MEASURED up --wait with ray 2.40.0 failed after: %.1f s", time.Since(start).Seconds())
			msg, _, _ := strings.Cut(r.stderr[strings.LastIndex(strings.TrimSpace(r.stderr), "\n")+1:], "; log ")
			t.Logf("CHECK up with ray 2.40.0: exit %d: %s", r.code, msg)
			if r.code != exitFailure || !strings.Contains(r.stderr, "2.40.0") || !strings.Contains(r.stderr, "--insecure") {
				t.Errorf("up with ray 2.40.0: exit %d, want %d with an error naming 2.40.0 and --insecure: %s", r.code, exitFailure, r.stderr)
			}
			// With --insecure the gate is skipped: the stub's `ray start` runs
			// (and never gets healthy, so --wait times out instead of failing).
			r = e.sray(t, "up", "--name", "e2esecold2", "--insecure", "--ray", stub, "--gpus-per-node", "0", "--wait", "--timeout", "15s")
			t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2esecold2", "--timeout", "30s") })
			if r.code != exitTimeout || strings.Contains(r.stderr, "2.40.0") {
				t.Errorf("up --insecure with ray 2.40.0: exit %d, want %d (version gate skipped, stub Ray never healthy): %s", r.code, exitTimeout, r.stderr)
			}
		})
	})

	t.Run("the cluster directory is private", func(t *testing.T) {
		checkPrivate(t, e.user, filepath.Dir(dir.Path), dir.Path)
		e.mustSray(t, "down", "--cluster", "e2esec")
		// down keeps each node's Ray logs in logs/ray-<job>/: private too.
		kept, _ := filepath.Glob(filepath.Join(dir.Path, "logs", "ray-*"))
		if len(kept) == 0 {
			t.Errorf("no Ray logs kept after down")
		}
		checkPrivate(t, e.user, filepath.Dir(dir.Path), dir.Path)
	})
}

// checkPrivate checks the store root and a cluster directory: every directory
// 0700, every file 0600 (the sraybatch copy 0700). SLURM creates the job logs
// itself with the submitting shell's umask (0644 under umask 022): they are
// reported, and must sit in a 0700 directory and be writable by the user only.
// With a test user, everything must be that user's: nothing written as root.
func checkPrivate(t *testing.T, u *testUser, root, clusterDir string) {
	t.Helper()
	if st, err := os.Stat(root); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("store root %s: %v %v, want 0700", root, st.Mode(), err)
	}
	var files, slurmLogs int
	err := filepath.WalkDir(clusterDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm, rel := info.Mode().Perm(), strings.TrimPrefix(path, clusterDir)
		if st, ok := info.Sys().(*syscall.Stat_t); ok && u != nil && (st.Uid != u.uid || st.Gid != u.gid) {
			t.Errorf("%s is owned by %d:%d, want the user %s (%d:%d)", path, st.Uid, st.Gid, u.name, u.uid, u.gid)
		}
		switch {
		case d.IsDir():
			if perm != 0o700 {
				t.Errorf("directory %s is %04o, want 0700", path, perm)
			}
		case !info.Mode().IsRegular():
			t.Errorf("%s is %s, want a regular file", path, info.Mode().Type())
		case rel == "/bin/sraybatch":
			if perm != 0o700 {
				t.Errorf("%s is %04o, want 0700", path, perm)
			}
		case filepath.Dir(rel) == "/logs" && strings.HasSuffix(rel, ".out"):
			slurmLogs++
			t.Logf("CHECK SLURM-written job log %s is %04o (sbatch's umask); its directory is private", rel, perm)
			if perm&0o022 != 0 {
				t.Errorf("job log %s is %04o: writable by others", path, perm)
			}
		default:
			files++
			if perm != 0o600 {
				t.Errorf("file %s is %04o, want 0600", path, perm)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CHECK cluster directory: %d files 0600, binary 0700, every directory 0700, %d SLURM logs", files, slurmLogs)
	if files < 5 {
		t.Errorf("only %d state files checked", files)
	}
}

// rawNode is a `ray start` that sraybatch did not start: a stranger's worker.
type rawNode struct {
	cmd     *exec.Cmd
	out     bytes.Buffer
	done    chan struct{}
	exited  time.Time
	lo, hi  int // its ports
	address string
	env     []string
}

// lostPortRace reports whether the node failed because one of its ports was
// taken after freePortBlock found it free (rather than for want of the token).
func (n *rawNode) lostPortRace() bool {
	out := n.out.String()
	return !strings.Contains(out, "InvalidAuthToken") &&
		regexp.MustCompile(`(?i)address already in use|failed to bind|port \d+ .*(in use|taken|not available)`).MatchString(out)
}

// startRawNode starts a worker on 127.0.0.13 at the given head with env
// added to a clean environment; its 50 ports are a block found free now.
func startRawNode(t *testing.T, e e2eEnv, address string, env []string) *rawNode {
	t.Helper()
	lo, hi := freePortBlock(t, 50)
	tmp, err := os.MkdirTemp("/tmp", "srbsec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	port := func(i int) string { return fmt.Sprint(lo + i) }
	n := &rawNode{done: make(chan struct{}), lo: lo, hi: hi, address: address, env: env}
	n.cmd = exec.Command(filepath.Join(e.venv, "bin", "ray"), "start", "--address="+address, "--block",
		"--node-ip-address", "127.0.0.13", "--num-cpus", "0", "--num-gpus", "0", "--temp-dir", tmp,
		"--object-store-memory", "80000000", "--disable-usage-stats",
		"--node-manager-port", port(0), "--object-manager-port", port(1),
		"--dashboard-agent-listen-port", port(2), "--dashboard-agent-grpc-port", port(3),
		"--metrics-export-port", port(4), "--runtime-env-agent-port", port(5),
		"--min-worker-port", port(10), "--max-worker-port", fmt.Sprint(hi))
	// HOME is empty: no ~/.ray/auth_token of whoever runs the tests is found.
	n.cmd.Env = append([]string{"PATH=" + filepath.Join(e.venv, "bin") + ":/usr/bin:/bin", "HOME=" + tmp, "RAY_USAGE_STATS_ENABLED=0"}, env...)
	n.cmd.Stdout, n.cmd.Stderr = &n.out, &n.out
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.cmd.Wait()
		n.exited = time.Now()
		close(n.done)
	}()
	t.Cleanup(n.kill)
	return n
}

// kill ends exactly this node's processes: its descendants, then its group.
// Never `ray stop`, which kills every Ray on the host.
func (n *rawNode) kill() {
	pid := n.cmd.Process.Pid
	for _, p := range proctree.Descendants(pid) {
		syscall.Kill(p, syscall.SIGKILL)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-n.done
}

func rawWorkersCannotJoin(t *testing.T, e e2eEnv, dir cluster.Dir, head cluster.HeadInfo, token, wrongToken string) {
	nodes := map[string]*rawNode{
		"RAY_AUTH_MODE=token with a wrong token": startRawNode(t, e, head.Address, []string{"RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN=" + wrongToken}),
		"RAY_AUTH_MODE=disabled without a token": startRawNode(t, e, head.Address, []string{"RAY_AUTH_MODE=disabled"}),
	}
	start := time.Now()
	headNodes := map[string]bool{}
	strangers := map[string]string{}
	watch := func() {
		for _, n := range dashboardNodes(t, head.Dashboard, token) {
			if n.IsHead {
				headNodes[n.NodeID] = true
			} else {
				strangers[n.NodeID] = n.NodeIP + " " + n.State
			}
		}
	}
	restarts := 0
	for what, n := range nodes {
		for exited := false; !exited; {
			watch()
			select {
			case <-n.done:
				exited = true
				if n.lostPortRace() && restarts < 3 {
					restarts++
					t.Logf("CHECK raw worker, %s: lost the race for ports %d-%d, retrying with another block:\n%s", what, n.lo, n.hi, n.out.String())
					n = startRawNode(t, e, n.address, n.env)
					nodes[what] = n
					exited = false
				}
			case <-time.After(500 * time.Millisecond):
				if time.Since(start) > 60*time.Second {
					t.Errorf("%s: ray start still running after 60 s:\n%s", what, n.out.String())
					n.kill()
				}
			}
		}
		code := n.cmd.ProcessState.ExitCode()
		reason := regexp.MustCompile(`(?m)^\S*AuthenticationError: .*$`).FindString(n.out.String())
		t.Logf("CHECK raw worker, %s: exit %d after %.1f s: %.300s", what, code, n.exited.Sub(start).Seconds(), reason)
		if code == 0 {
			t.Errorf("%s: ray start exited 0", what)
		}
		if !strings.Contains(n.out.String(), "InvalidAuthToken") {
			t.Errorf("%s: ray start failed, but not for want of the token:\n%s", what, n.out.String())
		}
	}
	watch()
	if len(headNodes) != 1 || len(strangers) > 0 {
		t.Errorf("Ray nodes seen while strangers tried to join: head %v, others %v", headNodes, strangers)
	}
	st := e.status(t, "e2esec")
	m, err := dir.Membership()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CHECK after both raw workers: dashboard lists %d node(s) (all states), status %d job(s), membership %d node(s)", len(headNodes)+len(strangers), len(st.Jobs), len(m.Nodes))
	if len(st.Jobs) != 1 || len(m.Nodes) != 1 {
		t.Errorf("status shows %d jobs and membership %d nodes, want the head alone", len(st.Jobs), len(m.Nodes))
	}
}

type dashNode struct {
	NodeID string `json:"node_id"`
	NodeIP string `json:"node_ip"`
	IsHead bool   `json:"is_head_node"`
	State  string `json:"state"`
}

// dashboardNodes lists every node the GCS knows, dead ones included.
func dashboardNodes(t *testing.T, dashboard, token string) []dashNode {
	t.Helper()
	code, body := httpDo(t, http.MethodGet, dashboard+"/api/v0/nodes?detail=true&limit=10000", "Bearer "+token, "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v0/nodes with the token: %d %s", code, body)
	}
	var resp struct {
		Data struct {
			Result struct {
				Result []dashNode `json:"result"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("nodes: %v: %s", err, body)
	}
	return resp.Data.Result.Result
}

// driverProbe connects a driver to addr and reports; exit 3 when refused.
const driverProbe = `
import os, sys, ray
try:
    if sys.argv[1].startswith("ray://"):
        ray.init(sys.argv[1], log_to_driver=False)
    else:
        ray.init(address=sys.argv[1], _node_ip_address=sys.argv[2], log_to_driver=False)
except Exception as e:
    print("REFUSED %s: %s" % (type(e).__name__, " ".join(str(e).split())[:300]), flush=True)
    sys.exit(3)
print("CONNECTED to %d nodes" % len(ray.nodes()), flush=True)
`

func driversRefused(t *testing.T, e e2eEnv, headIP, gcs, client, token, wrongToken string) {
	type outcome struct {
		code int
		out  string
		took time.Duration
	}
	// probe runs the driver with a clean environment (and an empty HOME, so
	// no ~/.ray/auth_token is found) plus env, for at most 90 s.
	probe := func(addr string, env ...string) outcome {
		home := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(e.venv, "bin", "python"), "-c", driverProbe, addr, headIP)
		cmd.Env = append([]string{"PATH=" + filepath.Join(e.venv, "bin") + ":/usr/bin:/bin", "HOME=" + home, "RAY_USAGE_STATS_ENABLED=0"}, env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		start := time.Now()
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Errorf("driver at %s: %v", addr, err)
			return outcome{code: -1}
		}
		if ctx.Err() != nil {
			t.Errorf("driver at %s did not finish within 90 s:\n%s", addr, out)
		}
		return outcome{cmd.ProcessState.ExitCode(), string(out), time.Since(start)}
	}
	evidence := func(out string, pattern string) string {
		return regexp.MustCompile(pattern).FindString(out)
	}
	type attempt struct{ what, addr string }
	attempts := []attempt{{"GCS port", gcs}, {"client-server port", client}}
	wrong := [][]string{{"RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN=" + wrongToken}, {"RAY_AUTH_MODE=disabled"}}
	// The four refusals each take Ray's full connect timeout (20-30 s): run them at once.
	results := make([][]outcome, len(attempts))
	var wg sync.WaitGroup
	for i, a := range attempts {
		results[i] = make([]outcome, len(wrong))
		for j, env := range wrong {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i][j] = probe(a.addr, env...)
			}()
		}
	}
	wg.Wait()
	for i, a := range attempts {
		for j, env := range wrong {
			r := results[i][j]
			t.Logf("CHECK ray.init(%q) on the %s with %v: exit %d after %.1f s: %s | %s", a.addr, a.what, env, r.code, r.took.Seconds(),
				evidence(r.out, `(?m)^REFUSED.*$`), evidence(r.out, `Unauthenticated: RPC error: InvalidAuthToken[^\n]*`))
			if r.code != 3 {
				t.Errorf("ray.init(%q) with %v: exit %d, want it refused (3):\n%s", a.addr, env, r.code, r.out)
			}
			if a.what == "GCS port" && !strings.Contains(r.out, "InvalidAuthToken") {
				t.Errorf("ray.init(%q) with %v failed, but not for want of the token:\n%s", a.addr, env, r.out)
			}
		}
		// The same driver with the token connects: the refusals above are the
		// token's doing. Ray's client server can time a first connection out
		// on a loaded 2-core machine, so it gets a second try.
		r := probe(a.addr, "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN="+token)
		if r.code != 0 {
			t.Logf("ray.init(%q) with the token: exit %d on the first try, trying again:\n%s", a.addr, r.code, r.out)
			r = probe(a.addr, "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN="+token)
		}
		t.Logf("CHECK ray.init(%q) on the %s with the token: exit %d after %.1f s: %s", a.addr, a.what, r.code, r.took.Seconds(), evidence(r.out, `(?m)^CONNECTED.*$`))
		if r.code != 0 {
			t.Errorf("ray.init(%q) with the token: exit %d:\n%s", a.addr, r.code, r.out)
		}
	}
}

func jobsAPIRefuses(t *testing.T, dashboard, token, wrongToken string) {
	suffix := make([]byte, 6)
	rand.Read(suffix)
	canary := filepath.Join(os.TempDir(), "CANARY-e2esec-"+hex.EncodeToString(suffix))
	proof := canary + "-authorized"
	t.Cleanup(func() { os.Remove(canary); os.Remove(proof) })
	body := fmt.Sprintf(`{"entrypoint":"touch %s"}`, canary)
	for _, c := range []struct {
		auth string
		want int
	}{{"", http.StatusUnauthorized}, {"Bearer " + wrongToken, http.StatusForbidden}, {"Bearer ", http.StatusForbidden}, {"Basic Zm9vOmJhcg==", http.StatusForbidden}} {
		code, resp := httpDo(t, http.MethodPost, dashboard+"/api/jobs/", c.auth, body)
		t.Logf("CHECK jobs API POST /api/jobs/ with Authorization %q: %d %s", redact(c.auth), code, oneLineBody(resp))
		if code != c.want {
			t.Errorf("POST /api/jobs/ with Authorization %q: %d %s, want %d", redact(c.auth), code, resp, c.want)
		}
	}
	// With the token the same API runs a job: proof it would have run the canary.
	code, resp := httpDo(t, http.MethodPost, dashboard+"/api/jobs/", "Bearer "+token, fmt.Sprintf(`{"entrypoint":"touch %s && sleep 300"}`, proof))
	var job struct {
		SubmissionID string `json:"submission_id"`
	}
	if code != http.StatusOK || json.Unmarshal(resp, &job) != nil || job.SubmissionID == "" {
		t.Fatalf("POST /api/jobs/ with the token: %d %s", code, resp)
	}
	t.Logf("CHECK jobs API POST with the token: %d, submission %s", code, job.SubmissionID)
	waitFor(t, "authorized job's entrypoint ran", 60*time.Second, func() bool {
		_, err := os.Stat(proof)
		return err == nil
	})
	code, resp = httpDo(t, http.MethodPost, dashboard+"/api/jobs/"+job.SubmissionID+"/stop", "Bearer "+token, "")
	t.Logf("CHECK jobs API stop with the token: %d %s", code, oneLineBody(resp))
	if code != http.StatusOK || !strings.Contains(string(resp), `"stopped": true`) {
		t.Errorf("stop %s: %d %s", job.SubmissionID, code, resp)
	}
	waitFor(t, "authorized job stopped", 60*time.Second, func() bool {
		_, resp := httpDo(t, http.MethodGet, dashboard+"/api/jobs/"+job.SubmissionID, "Bearer "+token, "")
		return strings.Contains(string(resp), `"status": "STOPPED"`)
	})
	_, resp = httpDo(t, http.MethodGet, dashboard+"/api/jobs/", "Bearer "+token, "")
	var jobs []struct {
		SubmissionID string `json:"submission_id"`
	}
	if err := json.Unmarshal(resp, &jobs); err != nil || len(jobs) != 1 || jobs[0].SubmissionID != job.SubmissionID {
		t.Errorf("jobs known to Ray: %s (%v), want the authorized one alone", resp, err)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Errorf("%s exists: a job submitted without the token ran", canary)
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func httpDo(t *testing.T, method, url, auth, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b
}

func redact(auth string) string {
	if len(auth) > 24 {
		return auth[:20] + "..."
	}
	return auth
}

func oneLineBody(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}
