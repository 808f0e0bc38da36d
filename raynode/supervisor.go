// Package raynode is the supervisor that runs inside each job of a cluster
// (`sraybatch node head|worker`): it prepares the environment, starts exactly
// one Ray node with `ray start --block`, publishes what the login node needs,
// and on any way out stops every process it started — and nothing else.
package raynode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/gpu"
	"github.com/sraybatch/sraybatch/internal/proctree"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// Timing of the supervisor. Workers must give up GPUs within 30 s of losing
// their head, so every check that detects that runs well inside that bound.
const (
	headWaitLimit     = 10 * time.Minute
	headCheckInterval = 2 * time.Second
	startTimeout      = 3 * time.Minute
	// stopGrace + the drain below must end well inside SLURM's KillWait
	// (often 30 s, 10 s on the dev cluster) after scancel's SIGTERM.
	stopGrace = 5 * time.Second
	// rayDrainSeconds bounds Ray's own drain on SIGTERM (Ray's default: 30 s).
	rayDrainSeconds    = "2"
	membershipInterval = 2 * time.Second
	drainNotice        = 5 * time.Second
	startAttempts      = 3
	// workerGCSReconnect bounds how long a worker's raylet waits for a lost
	// head's GCS before exiting (Ray's default is 60 s).
	workerGCSReconnect = "20"
	// headSilentAfter: a head whose supervisor has not written its heartbeat
	// for this long is frozen or cut off (SIGSTOP, a dead node).
	headSilentAfter = 10 * time.Second
	// slurmCheckInterval spaces squeue calls per job: a hundred workers
	// asking every 2 s would load the controller.
	slurmCheckInterval = 10 * time.Second
)

// Config is what a supervisor needs from its job and from sraybatch.
type Config struct {
	Role cluster.Role
	Dir  cluster.Dir
	// Spec is the cluster's spec, read once by the caller from Dir.
	Spec    cluster.Spec
	HeadJob string
	Getenv  func(string) string
	Environ []string
	// Scheduler answers NodeAddr and head-job checks; may be nil outside SLURM.
	Scheduler scheduler.Scheduler
	GPUs      gpu.Source
	// DriverArgv is the command a driver job runs once its Ray node has joined.
	DriverArgv []string
	// Log receives the supervisor's progress lines and Ray's own output (the job log).
	Log io.Writer
}

// JobKey names the job as status does: "8", or "7_0" for an array task.
func JobKey(getenv func(string) string) string {
	if a, t := getenv("SLURM_ARRAY_JOB_ID"), getenv("SLURM_ARRAY_TASK_ID"); a != "" && t != "" {
		return a + "_" + t
	}
	return getenv("SLURM_JOB_ID")
}

type supervisor struct {
	cfg  Config
	spec cluster.Spec
	rec  cluster.NodeRecord
	// rayVersion is what the head's version check found ("" when skipped).
	rayVersion string
	tail       *tailBuffer
	// lastSlurmCheck is when headGone last asked squeue.
	lastSlurmCheck time.Time
	// noGPUUse is set once the GPU source turned out to know no use figures.
	noGPUUse bool
	logf     func(format string, args ...any)
}

// errDrain ends a node before its time limit: not a failure.
var errDrain = errors.New(cluster.ReasonDrained)

// Run supervises one Ray node until the job is cancelled, drained, or Ray
// exits. Its error is the job's outcome; the node record says the same.
func Run(ctx context.Context, cfg Config) error {
	key := JobKey(cfg.Getenv)
	if key == "" {
		return errors.New("sraybatch node runs inside a SLURM job (SLURM_JOB_ID is unset)")
	}
	s := &supervisor{cfg: cfg, spec: cfg.Spec, tail: newTailBuffer(40)}
	s.logf = func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "sraybatch node %s [%s]: %s\n", cfg.Role, time.Now().Format(time.TimeOnly), fmt.Sprintf(format, args...))
	}
	s.rec = cluster.NodeRecord{
		Job: key, Role: cfg.Role, Phase: cluster.PhaseStarting,
		SlurmNode: cfg.Getenv("SLURMD_NODENAME"), Started: time.Now().UTC(),
	}
	s.save()
	if err := proctree.BecomeSubreaper(); err != nil {
		s.logf("warning: cannot become a subreaper (%v): orphaned Ray processes may escape cleanup", err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	drain := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGUSR1 { // the time-limit warning (--signal=B:USR1@...)
				select {
				case drain <- struct{}{}:
				default:
				}
				continue
			}
			cancel(fmt.Errorf("cancelled (%s)", sig))
		}
	}()

	err := s.run(ctx, drain)
	s.finish(err)
	if errors.Is(err, errDrain) || isCancel(ctx, err) {
		return nil
	}
	return err
}

func isCancel(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != nil && errors.Is(err, context.Cause(ctx))
}

func (s *supervisor) save() {
	if err := s.cfg.Dir.WriteNode(s.rec); err != nil {
		s.logf("warning: cannot write node record: %v", err)
	}
}

func (s *supervisor) finish(err error) {
	switch {
	case err == nil && s.rec.ExitCode != nil:
		s.rec.Phase, s.rec.Reason = cluster.PhaseEnded, cluster.ReasonDriverFinished
	case err == nil:
		s.rec.Phase, s.rec.Reason = cluster.PhaseEnded, "ray exited"
	case errors.Is(err, errDrain):
		s.rec.Phase, s.rec.Reason = cluster.PhaseEnded, cluster.ReasonDrained
	case s.rec.Phase == cluster.PhaseStarting:
		s.rec.Phase, s.rec.Reason = cluster.PhaseFailed, oneLine(err.Error())
	default:
		s.rec.Phase, s.rec.Reason = cluster.PhaseEnded, oneLine(err.Error())
	}
	s.logf("%s: %s", s.rec.Phase, s.rec.Reason)
	s.save()
}

func (s *supervisor) run(ctx context.Context, drain <-chan struct{}) error {
	env, err := s.setup(ctx)
	if err != nil {
		return err
	}
	ray, err := lookPath(orDefault(s.spec.Ray, "ray"), envValue(env, "PATH"))
	if err != nil {
		return fmt.Errorf("find ray after --setup: %w", err)
	}
	if s.cfg.Role == cluster.RoleHead && !s.spec.Insecure {
		if err := s.checkRayVersion(ctx, ray, env); err != nil {
			return err
		}
	}
	var gpus []gpu.Device
	if s.cfg.Role != cluster.RoleDriver { // a driver's node takes no actors
		if gpus, err = s.cfg.GPUs.Visible(); err != nil {
			return fmt.Errorf("find the job's GPUs: %w", err)
		}
	}
	ip, err := s.nodeIP(ctx)
	if err != nil {
		return err
	}
	s.rec.IP, s.rec.GPUs = ip, len(gpus)
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = g.ID
	}
	s.rec.GPUIDs = strings.Join(ids, ",")
	s.save()

	var head cluster.HeadInfo
	if s.cfg.Role != cluster.RoleHead {
		if head, err = s.waitForHead(ctx); err != nil {
			return err
		}
	}
	tmp, err := s.makeTempDir()
	if err != nil {
		return err
	}
	s.rec.TempDir = tmp
	defer func() {
		s.keepLogs(tmp)
		os.RemoveAll(tmp)
	}()
	portRange := DefaultPortRange
	if s.spec.PortRange != "" {
		if portRange, err = ParsePortRange(s.spec.PortRange); err != nil {
			return err
		}
	}

	var node *child
	var ports Ports
	for attempt := 1; ; attempt++ {
		if ports, err = AllocatePorts(portRange, PortFree); err != nil {
			return err
		}
		params := s.startParams(ip, len(gpus), ports, tmp, head)
		node, err = s.startRay(ray, params, append(withoutKeys(env, "AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT"), ports.Env(params.Head)...))
		if err != nil {
			return err
		}
		err = s.waitUp(ctx, node, ports)
		if err == nil {
			break
		}
		s.stopRay(node)
		if ctx.Err() != nil || !errors.Is(err, errExitedEarly) || attempt == startAttempts {
			return err
		}
		s.logf("ray start failed (%v); retrying with other ports (attempt %d of %d)", err, attempt+1, startAttempts)
	}
	defer s.stopRay(node)

	if s.cfg.Role == cluster.RoleHead {
		if err := s.publishHead(ip, ports); err != nil {
			return err
		}
	}
	s.rec.Phase = cluster.PhaseRunning
	s.save()
	s.logf("ray node up at %s (%d GPUs)", ip, len(gpus))
	var driver *child
	if s.cfg.Role == cluster.RoleDriver {
		if driver, err = s.startDriver(env, head); err != nil {
			return err
		}
		// The driver's whole group, then Ray: it gets a grace period to finish.
		defer driver.stop(true)
	}
	return s.monitor(ctx, node, driver, ports, drain)
}

// errDriverFailed is a driver command that exited non-zero.
var errDriverFailed = errors.New("driver failed")

// startDriver runs the user's driver next to this job's Ray node, so a bare
// ray.init() finds a local raylet of the cluster.
func (s *supervisor) startDriver(env []string, head cluster.HeadInfo) (*child, error) {
	env = withoutKeys(env, "RAY_ADDRESS", "PYTHONPATH", "SRAYBATCH_EVENTS", "SRAYBATCH_CLUSTER_DIR", "SRAYBATCH_JOB", "SRAYBATCH_HEAD_JOB")
	pythonPath := s.cfg.Dir.PythonPath()
	if p := envValue(s.cfg.Environ, "PYTHONPATH"); p != "" {
		pythonPath += ":" + p
	}
	env = append(env,
		"RAY_ADDRESS="+head.Address,
		"PYTHONPATH="+pythonPath,
		"PYTHONUNBUFFERED=1",
		"SRAYBATCH_EVENTS="+s.cfg.Dir.EventsPath(s.rec.Job),
		"SRAYBATCH_CLUSTER_DIR="+s.cfg.Dir.Path,
		"SRAYBATCH_JOB="+s.rec.Job,
		"SRAYBATCH_HEAD_JOB="+s.cfg.HeadJob,
	)
	path, err := lookPath(s.cfg.DriverArgv[0], envValue(env, "PATH"))
	if err != nil {
		return nil, fmt.Errorf("driver command: %w", err)
	}
	s.logf("driver: %s", strings.Join(s.cfg.DriverArgv, " "))
	cmd := exec.Command(path, s.cfg.DriverArgv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = s.cfg.Log, io.MultiWriter(s.cfg.Log, s.tail)
	driver, err := startChild(cmd)
	if err != nil {
		return nil, fmt.Errorf("start driver: %w", err)
	}
	return driver, nil
}

// driverResult records the driver's exit status and turns it into the job's outcome.
func (s *supervisor) driverResult(p *child) error {
	code := p.cmd.ProcessState.ExitCode()
	s.rec.ExitCode = &code
	if code == 0 {
		return nil
	}
	return fmt.Errorf("%w: exit code %d: %s", errDriverFailed, code, s.tail.String())
}

// setup runs the user's --setup lines once in bash and returns the environment
// they leave behind, so `ray` is found where the user's setup put it.
func (s *supervisor) setup(ctx context.Context) ([]string, error) {
	env := withoutKeys(s.cfg.Environ, "RAY_ADDRESS", "RAY_AUTH_TOKEN")
	lines, err := os.ReadFile(s.cfg.Dir.SetupPath())
	if err != nil {
		return nil, fmt.Errorf("read setup: %w", err)
	}
	if len(bytes.TrimSpace(lines)) == 0 {
		return env, nil
	}
	s.logf("running --setup")
	var out bytes.Buffer
	tail := newTailBuffer(10)
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", `set -e; { source "$1"; } >&2; env -0`, "sraybatch-setup", s.cfg.Dir.SetupPath())
	cmd.Env = env
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(s.cfg.Log, tail)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("--setup failed (%v): %s", err, tail.String())
	}
	var setupEnv []string
	for _, kv := range strings.Split(out.String(), "\x00") {
		if strings.Contains(kv, "=") {
			setupEnv = append(setupEnv, kv)
		}
	}
	return withoutKeys(setupEnv, "RAY_ADDRESS", "RAY_AUTH_TOKEN"), nil
}

func (s *supervisor) checkRayVersion(ctx context.Context, ray string, env []string) error {
	cmd := exec.CommandContext(ctx, ray, "--version")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("`%s --version` failed (%v): %s", ray, err, oneLine(string(out)))
	}
	v, err := ParseRayVersion(string(out))
	if err != nil {
		return err
	}
	if !v.AtLeast(MinAuthVersion) {
		return fmt.Errorf("ray %s found after --setup has no token auth (needs >= %s): install a newer ray, or `up --insecure` to run without auth", v, MinAuthVersion)
	}
	s.rayVersion = v.String()
	s.logf("ray %s", v)
	return nil
}

func (s *supervisor) nodeIP(ctx context.Context) (string, error) {
	src := NodeIPSource{
		Override: s.spec.NodeIP, Interface: s.spec.Interface,
		Lookup: net.DefaultResolver.LookupHost,
		InterfaceAddrs: func(name string) ([]net.Addr, error) {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return nil, err
			}
			return ifc.Addrs()
		},
	}
	if node := s.cfg.Getenv("SLURMD_NODENAME"); node != "" && s.cfg.Scheduler != nil {
		src.SlurmAddr = func(ctx context.Context) (string, error) { return s.cfg.Scheduler.NodeAddr(ctx, node) }
	}
	return src.Choose(ctx)
}

// waitForHead waits until the head has published its address. A worker's
// `--dependency=after:` is satisfied by a cancelled head too, so it checks the
// head job itself and gives up as soon as the head can no longer publish.
func (s *supervisor) waitForHead(ctx context.Context) (cluster.HeadInfo, error) {
	deadline := time.Now().Add(headWaitLimit)
	for {
		h, ok, err := s.cfg.Dir.Head()
		if err != nil {
			return h, err
		}
		if ok {
			return h, nil
		}
		if reason := s.headGone(ctx); reason != "" {
			return h, fmt.Errorf("head job %s %s before publishing its address", s.cfg.HeadJob, reason)
		}
		if time.Now().After(deadline) {
			return h, fmt.Errorf("head job %s published no address within %s", s.cfg.HeadJob, headWaitLimit)
		}
		select {
		case <-ctx.Done():
			return h, context.Cause(ctx)
		case <-time.After(headCheckInterval):
		}
	}
}

// headGone returns why the head cannot serve this cluster any more, or "".
func (s *supervisor) headGone(ctx context.Context) string {
	if rec, ok, err := s.cfg.Dir.Node(s.cfg.HeadJob); err == nil && ok && rec.Final() {
		return string(rec.Phase) + " (" + rec.Reason + ")"
	}
	if _, down, _ := s.cfg.Dir.Down(); down {
		return "ended (cluster down)"
	}
	if m, err := s.cfg.Dir.Membership(); err == nil && !m.Heartbeat.IsZero() {
		if silent := time.Since(m.Heartbeat); silent > headSilentAfter {
			return fmt.Sprintf("unresponsive (no heartbeat for %s)", silent.Round(time.Second))
		}
	}
	if s.cfg.Scheduler == nil || time.Since(s.lastSlurmCheck) < slurmCheckInterval {
		return ""
	}
	s.lastSlurmCheck = time.Now()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	jobs, err := s.cfg.Scheduler.Jobs(cctx, scheduler.Query{JobIDs: []string{s.cfg.HeadJob}})
	if err != nil {
		return "" // SLURM unreachable: not evidence that the head is gone
	}
	for _, j := range jobs {
		if j.ID == s.cfg.HeadJob {
			if j.State.Active() {
				return ""
			}
			return "ended (" + string(j.State) + ")"
		}
	}
	return "ended (no longer known to SLURM)"
}

// makeTempDir makes a short, node-local directory for Ray: Unix socket paths
// must stay under 107 bytes, /tmp/ray may belong to someone else, and a
// shared home is no place for sockets.
func (s *supervisor) makeTempDir() (string, error) {
	base := "/tmp"
	if t := s.cfg.Getenv("TMPDIR"); t != "" && len(t) <= 40 && !underHome(t, s.cfg.Getenv("HOME")) {
		base = t
	}
	dir, err := os.MkdirTemp(base, "srb-"+s.rec.Job+"-")
	if err != nil {
		return "", fmt.Errorf("make Ray temp dir: %w", err)
	}
	return dir, nil
}

func underHome(path, home string) bool {
	return home != "" && (path == home || strings.HasPrefix(path, strings.TrimSuffix(home, "/")+"/"))
}

func (s *supervisor) startParams(ip string, gpus int, ports Ports, tmp string, head cluster.HeadInfo) StartParams {
	p := StartParams{
		Head: s.cfg.Role == cluster.RoleHead,
		Params: map[string]string{
			"node-ip-address": ip,
			"num-gpus":        strconv.Itoa(gpus),
			"num-cpus":        strconv.Itoa(s.cpus()),
			"temp-dir":        tmp,
		},
		Flags:     []string{"disable-usage-stats"},
		Resources: map[string]float64{cluster.JobResource(s.rec.Job): 1},
		Labels: map[string]string{
			"sraybatch-cluster": s.spec.Name,
			"sraybatch-role":    string(s.cfg.Role),
			"sraybatch-job":     s.rec.Job,
		},
	}
	if p.Head {
		p.Params["include-dashboard"] = "true"
		p.Params["dashboard-host"] = "127.0.0.1"
	} else {
		p.Params["address"] = head.Address
	}
	if mem := s.memoryBytes(); mem > 0 {
		p.Params["memory"] = strconv.FormatInt(mem*6/10, 10)
		p.Params["object-store-memory"] = strconv.FormatInt(s.objectStoreBytes(mem), 10)
	} else if s.spec.ObjectStoreMB > 0 {
		p.Params["object-store-memory"] = strconv.FormatInt(int64(s.spec.ObjectStoreMB)<<20, 10)
	}
	if s.cfg.Role == cluster.RoleDriver { // the driver's node only hosts the driver
		p.Params["num-cpus"] = "0"
	}
	ports.Params(p.Head, p.Params)
	return p
}

func (s *supervisor) cpus() int {
	if n, err := strconv.Atoi(s.cfg.Getenv("SLURM_CPUS_ON_NODE")); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}

// memoryBytes is the job's memory allocation: Ray's own detection sees the
// whole machine, and /dev/shm (the object store) counts against the job.
func (s *supervisor) memoryBytes() int64 {
	if mb, err := strconv.ParseInt(s.cfg.Getenv("SLURM_MEM_PER_NODE"), 10, 64); err == nil && mb > 0 {
		return mb << 20
	}
	if mb, err := strconv.ParseInt(s.cfg.Getenv("SLURM_MEM_PER_CPU"), 10, 64); err == nil && mb > 0 {
		return mb << 20 * int64(s.cpus())
	}
	return 0
}

// minObjectStore is Ray's own lower limit for --object-store-memory.
const minObjectStore = 78643200

func (s *supervisor) objectStoreBytes(mem int64) int64 {
	store := mem * 3 / 10
	if s.spec.ObjectStoreMB > 0 {
		store = min(store, int64(s.spec.ObjectStoreMB)<<20)
	}
	return max(store, minObjectStore)
}

// child is a process the supervisor started (ray start, the driver): in a
// process group of its own, ended with the supervisor (Pdeathsig), and waited
// for in the background so its end can be selected on.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startChild(cmd *exec.Cmd) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM to the child (its whole group when group is set) and,
// after stopGrace, SIGKILL to its group; it returns once the child is gone.
func (c *child) stop(group bool) {
	select {
	case <-c.done:
		return
	default:
	}
	pid := c.cmd.Process.Pid
	if group {
		syscall.Kill(-pid, syscall.SIGTERM)
	} else {
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.done:
	case <-time.After(stopGrace):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-c.done
	}
}

func (s *supervisor) startRay(ray string, p StartParams, env []string) (*child, error) {
	argv := p.Argv()
	s.logf("%s %s", ray, strings.Join(argv, " "))
	cmd := exec.Command(ray, argv...)
	// CUDA numbers GPUs by PCI bus, like NVML and SLURM, not fastest-first.
	cmd.Env = append(withoutKeys(env, "CUDA_DEVICE_ORDER"), "CUDA_DEVICE_ORDER=PCI_BUS_ID")
	if envValue(env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S") == "" {
		cmd.Env = append(cmd.Env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="+rayDrainSeconds)
	}
	if s.cfg.Role != cluster.RoleHead && envValue(env, "RAY_gcs_rpc_server_reconnect_timeout_s") == "" {
		cmd.Env = append(cmd.Env, "RAY_gcs_rpc_server_reconnect_timeout_s="+workerGCSReconnect)
	}
	w := io.MultiWriter(s.cfg.Log, s.tail)
	cmd.Stdout, cmd.Stderr = w, w
	node, err := startChild(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", ray, err)
	}
	return node, nil
}

var errExitedEarly = errors.New("ray start exited before the node was up")

// waitUp returns once the node serves: the head when its GCS answers healthy
// through the dashboard, a worker when the head's membership snapshot shows
// it alive (a listening raylet may still fail to register).
func (s *supervisor) waitUp(ctx context.Context, node *child, ports Ports) error {
	deadline := time.After(startTimeout)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-node.done:
			return fmt.Errorf("%w (%v): %s", errExitedEarly, node.err, s.tail.String())
		case <-deadline:
			return fmt.Errorf("ray node not up within %s: %s", startTimeout, s.tail.String())
		case <-tick.C:
		}
		if s.cfg.Role == cluster.RoleHead {
			if s.dashboard(ports).healthy(ctx) {
				return nil
			}
			continue
		}
		if m, err := s.cfg.Dir.Membership(); err == nil {
			if me := m.Nodes[s.rec.Job]; me != nil && me.Alive && me.LastSeen.After(s.rec.Started) {
				return nil
			}
		}
		// A head that is gone or frozen never lets this node join: give up
		// rather than hold the GPUs until the start timeout.
		if n%7 == 6 {
			if reason := s.headGone(ctx); reason != "" {
				return fmt.Errorf("head job %s %s while this node was joining", s.cfg.HeadJob, reason)
			}
		}
	}
}

func (s *supervisor) dashboard(ports Ports) dashboardClient {
	token, _ := os.ReadFile(s.cfg.Dir.TokenPath())
	return dashboardClient{base: "http://127.0.0.1:" + strconv.Itoa(ports.Dashboard), token: strings.TrimSpace(string(token)), insecure: s.spec.Insecure}
}

func (s *supervisor) publishHead(ip string, ports Ports) error {
	h := cluster.HeadInfo{
		Job: s.rec.Job, Address: net.JoinHostPort(ip, strconv.Itoa(ports.GCS)), NodeIP: ip,
		Dashboard: "http://127.0.0.1:" + strconv.Itoa(ports.Dashboard), SlurmNode: s.rec.SlurmNode,
		RayVersion: s.rayVersion, Published: time.Now().UTC(),
	}
	if err := s.cfg.Dir.WriteHead(h); err != nil {
		return fmt.Errorf("publish head address: %w", err)
	}
	return nil
}

// monitor waits for the end: Ray exiting, a cancel, a drain, or (workers) the
// head going away. The head also keeps the membership snapshot fresh.
func (s *supervisor) monitor(ctx context.Context, node, driver *child, ports Ports, drain <-chan struct{}) error {
	var driverDone <-chan struct{}
	if driver != nil {
		driverDone = driver.done
	}
	tick := time.NewTicker(membershipInterval)
	defer tick.Stop()
	s.sampleGPUs()
	lastSample := time.Now()
	var members *membershipTracker
	if s.cfg.Role == cluster.RoleHead {
		members = newMembershipTracker(s.cfg.Dir, s.dashboard(ports))
		members.refresh(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-node.done:
			return fmt.Errorf("ray exited (%v): %s", node.err, s.tail.String())
		case <-driverDone:
			return s.driverResult(driver)
		case <-drain:
			limitAt := time.Now().Add(time.Duration(s.spec.DrainBeforeS) * time.Second).UTC()
			s.rec.TimeLimitAt = &limitAt
			if s.cfg.Role != cluster.RoleWorker {
				// The cluster (or the training) ends with this job: warn, so a
				// driver can checkpoint; SLURM ends the job at the limit.
				s.logf("time limit at about %s: checkpoint now", limitAt.Local().Format(time.TimeOnly))
				s.save()
				continue
			}
			s.rec.Phase, s.rec.Reason = cluster.PhaseDraining, "time limit near"
			s.save()
			s.logf("draining: leaving Ray in %s", drainNotice)
			select {
			case <-time.After(drainNotice):
			case <-ctx.Done():
			}
			return errDrain
		case <-tick.C:
		}
		if time.Since(lastSample) >= cluster.GPUSampleInterval {
			s.sampleGPUs()
			lastSample = time.Now()
		}
		if members != nil {
			members.refresh(ctx)
		} else if reason := s.headGone(ctx); reason != "" {
			return fmt.Errorf("head job %s %s", s.cfg.HeadJob, reason)
		}
	}
}

// sampleGPUs records the node's GPU use in its record, for `status --gpus`.
func (s *supervisor) sampleGPUs() {
	src, ok := s.cfg.GPUs.(gpu.InventorySource)
	if !ok || s.rec.GPUs == 0 || s.noGPUUse {
		return
	}
	inv, err := src.Inventory()
	if err != nil {
		s.logf("warning: GPU inventory: %v", err)
		return
	}
	s.noGPUUse = inv.Source != "NVML" // the environment names GPUs but knows nothing of their use
	samples := make([]cluster.GPUSample, 0, len(inv.GPUs))
	for _, g := range inv.GPUs {
		sample := cluster.GPUSample{ID: g.ID, Name: g.Name, Processes: len(g.Processes)}
		if g.UtilizationPct >= 0 {
			util := g.UtilizationPct
			sample.UtilizationPct = &util
		}
		if g.MemoryTotal > 0 {
			used, total := int64(g.MemoryUsed>>20), int64(g.MemoryTotal>>20)
			sample.MemoryUsedMiB, sample.MemoryTotalMiB = &used, &total
		}
		samples = append(samples, sample)
	}
	now := time.Now().UTC()
	s.rec.GPUSamples, s.rec.GPUsSampled = samples, &now
	s.save()
}

// stopRay stops the node's processes: SIGTERM to `ray start --block` (which
// stops its children gracefully), then every process left below this
// subreaper, wherever Ray put it. Never `ray stop`: it kills every Ray on the host.
func (s *supervisor) stopRay(node *child) {
	node.stop(false) // `ray start --block` stops its own children on SIGTERM
	if n := proctree.KillTree(3 * time.Second); n > 0 {
		s.logf("stopped %d leftover Ray processes", n)
	}
}

// keepLogs copies the tail of each Ray log file to the log dir before the
// node-local temp dir is removed.
func (s *supervisor) keepLogs(tmp string) {
	if s.spec.LogDir == "" {
		return
	}
	dst := filepath.Join(s.spec.LogDir, "ray-"+s.rec.Job)
	if err := copyLogTails(filepath.Join(tmp, "session_latest", "logs"), dst, 1<<20, 64<<20); err != nil {
		s.logf("warning: keep Ray logs: %v", err)
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func withoutKeys(env []string, keys ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, k := range keys {
			if strings.HasPrefix(kv, k+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// lookPath finds name in the PATH left by --setup (exec.LookPath would use
// the supervisor's own PATH).
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		if st, err := os.Stat(name); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q is not on PATH after --setup: activate Ray's environment in --setup, or give --ray", name)
}

// tailBuffer keeps the last lines written to it, for error reasons.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  string
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	parts := strings.Split(t.part+string(p), "\n")
	t.part = parts[len(parts)-1]
	for _, l := range parts[:len(parts)-1] {
		if strings.TrimSpace(l) != "" {
			t.lines = append(t.lines, l)
		}
	}
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
	return len(p), nil
}

// String returns the last few lines joined on one line.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if t.part != "" {
		lines = append(lines[:len(lines):len(lines)], t.part)
	}
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return oneLine(strings.Join(lines, " | "))
}
