// Package raynode is the supervisor that runs inside each job of a cluster
// (`sraybatch node head|worker|driver`): it prepares the environment, starts
// exactly one Ray node with `ray start --block`, publishes what the login
// node needs, and on any way out stops every process it started — and
// nothing else. Its decisions are pure functions in decide.go; time and
// processes come in through Clock and Processes.
package raynode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/gpu"
	"github.com/sraybatch/sraybatch/internal/oneline"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// LogTimeLayout stamps the supervisor's lines in the job log: to the
// millisecond, as a handover's steps (seal, `ray start --head`, the
// driver's restart) take seconds and are read back from these lines.
const LogTimeLayout = "15:04:05.000"

// Config is what a supervisor needs from its job and from sraybatch.
type Config struct {
	Role cluster.Role
	Dir  cluster.Dir
	// Spec is the cluster's spec, read once by the caller from Dir.
	Spec    cluster.Spec
	HeadJob string
	Getenv  func(string) string
	Environ []string
	// Scheduler answers NodeAddr and head-job checks; may be nil.
	Scheduler Scheduler
	GPUs      gpu.Source
	// DriverArgv is the command a driver job runs once its Ray node has joined.
	DriverArgv []string
	// MaxRestarts bounds how often a driver job runs DriverArgv again in a
	// later head generation (rollover clusters).
	MaxRestarts int
	// Log receives the supervisor's progress lines and Ray's own output (the job log).
	Log io.Writer
	// Clock and Processes default to the system's.
	Clock     clock.Clock
	Processes Processes
	// Autoscaler runs in the head job while its Ray serves; nil: none.
	Autoscaler Autoscaler
	// DialRay opens the cluster's GCS: to drain this node before its time
	// limit, and to probe a silent head; nil: raygcs.Dial.
	DialRay func(addr, token string) (RayClient, error)
	// Preemption tells a worker's SIGTERM from SLURM's preemption apart
	// from a cancel; nil: every SIGTERM is a cancel.
	Preemption PreemptionSource
	// WorkerType is a worker's type: the resources and labels its Ray node
	// advertises, its node group and setup; zero for the head and drivers.
	WorkerType cluster.WorkerType
	// Successor submits a successor head job, for a rollover cluster's
	// head with no worker to promote; nil: none is submitted.
	Successor HeadSubmitter
	// DriverSuccessor submits a rollover cluster's successor driver job
	// before this driver job ends (driverjob.go); nil: none is submitted.
	DriverSuccessor DriverSubmitter
	// Follows is the driver job a successor driver job takes over from:
	// its command runs once that one has gone; "": none.
	Follows string
	// Restarts is how often the driver's command ran again before this
	// job (a successor driver job's), counted against MaxRestarts.
	Restarts int
}

// HeadSubmitter submits a head job of the cluster and records it; it
// returns the job id.
type HeadSubmitter interface {
	SubmitHead(ctx context.Context) (string, error)
}

// Scheduler is what a node asks of the scheduler (a scheduler.Scheduler):
// jobs (the head job's state, this job's time left, the head's
// observation) and its node's address.
type Scheduler interface {
	Jobs(ctx context.Context, q scheduler.Query) ([]scheduler.Job, error)
	NodeAddr(ctx context.Context, node string) (string, error)
}

var _ Scheduler = scheduler.Scheduler(nil)

// Autoscaler is the head job's autoscaler (autoscale.Loop): it runs from
// the moment the head's Ray serves until ctx ends, and must make no
// submission after.
type Autoscaler interface {
	Run(ctx context.Context, head cluster.HeadInfo)
}

// RayClient is what a node asks of the cluster's GCS (a *raygcs.Client).
type RayClient interface {
	Drain(ctx context.Context, nodeID string, reason raygcs.DrainReason, message string, deadline time.Time) (accepted bool, rejection string, err error)
	// Ping returns nil when the GCS answers an application-level call.
	Ping(ctx context.Context) error
	Close() error
}

// JobKey names the job as status does: "8", or "7_0" for an array task.
func JobKey(getenv func(string) string) string {
	if a, t := getenv("SLURM_ARRAY_JOB_ID"), getenv("SLURM_ARRAY_TASK_ID"); a != "" && t != "" {
		return a + "_" + t
	}
	return getenv("SLURM_JOB_ID")
}

type supervisor struct {
	cfg   Config
	spec  cluster.Spec
	clock clock.Clock
	procs Processes
	rec   cluster.NodeRecord
	// rayVersion is what the head's version check found ("" when skipped).
	rayVersion string
	tail       *tailBuffer
	// lastSchedulerCheck is when a head check last asked the scheduler.
	lastSchedulerCheck time.Time
	// noGPUUse is set once the GPU source turned out to know no use figures.
	noGPUUse bool
	// gcsClient is the cluster's GCS, dialled on first use (gcs()).
	gcsClient RayClient
	// metricsAddr is the head's metrics endpoint (observer.go), published in head.json.
	metricsAddr string
	// ending is how the node ends, once monitor decided it: the stop's
	// grace periods depend on it.
	ending cluster.Outcome
	// termArrived is set when a SIGTERM that may be a preemption arrives
	// (preemptionHandled), before SLURM says whether it is one
	// (awaitPreemption waits for that).
	termArrived atomic.Bool
	// rollover is this node's place in a rollover cluster's generations
	// (handover.go); zero without --rollover.
	rollover rolloverState
	// genStarted is when this node started its Ray in its current generation.
	genStarted time.Time
	// headStops stop the head's autoscaler and observer (head only).
	headStops headStops
	// wasJoined: the node was in an earlier generation's Ray.
	wasJoined bool
	// image is the cluster's container image; nil: Ray runs on the host.
	image *image
	logf  func(format string, args ...any)
}

// endError is how a node's run ended: a typed outcome, and the words for it.
type endError struct {
	outcome cluster.Outcome
	err     error
}

func (e *endError) Error() string { return e.err.Error() }
func (e *endError) Unwrap() error { return e.err }

// endWith ends the node's run with outcome o, for the reason err gives.
func endWith(o cluster.Outcome, err error) error { return &endError{outcome: o, err: err} }

// outcomeOf is the outcome a run's error carries; failed when none.
func outcomeOf(err error) cluster.Outcome {
	var e *endError
	if errors.As(err, &e) {
		return e.outcome
	}
	return cluster.OutcomeFailed
}

// Run supervises one Ray node until the job is cancelled, drained, or Ray
// exits. Its error is the job's outcome; the node record says the same.
func Run(ctx context.Context, cfg Config) error {
	key := JobKey(cfg.Getenv)
	if key == "" {
		return errors.New("sraybatch node runs inside a SLURM job (SLURM_JOB_ID is unset)")
	}
	s := newSupervisor(cfg, key)
	if why, refuse := requeuedHead(cfg.Role, cfg.Getenv("SLURM_RESTART_COUNT")); refuse {
		s.finish(endWith(cluster.OutcomeRequeuedHead, errors.New(why)))
		return nil // ends well: an error would only invite another requeue
	}
	s.save()
	if err := s.procs.Adopt(); err != nil {
		s.logf("warning: cannot become a subreaper (%v): orphaned Ray processes may escape cleanup", err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	n := notices{timeLimit: make(chan struct{}, 1), preempted: make(chan time.Time, 1)}
	stopSignals := s.onSignals(ctx, key, cancel, n)
	defer stopSignals()

	err := s.run(ctx, n)
	if s.gcsClient != nil {
		s.gcsClient.Close()
	}
	if ctx.Err() != nil && errors.Is(err, context.Cause(ctx)) {
		err = endWith(cluster.OutcomeCancelled, err) // interrupted wherever it was
	}
	if s.finish(err) {
		return nil
	}
	return err
}

// newSupervisor fills cfg's defaults and starts the node's record.
func newSupervisor(cfg Config, key string) *supervisor {
	if cfg.Clock == nil {
		cfg.Clock = clock.System{}
	}
	if cfg.Processes == nil {
		cfg.Processes = systemProcesses{}
	}
	if cfg.DialRay == nil {
		cfg.DialRay = func(addr, token string) (RayClient, error) { return raygcs.Dial(addr, token) }
	}
	s := &supervisor{cfg: cfg, spec: cfg.Spec, clock: cfg.Clock, procs: cfg.Processes, tail: newTailBuffer(40)}
	s.rollover.restarts = cfg.Restarts // a successor driver job's: it resumes
	s.logf = func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "sraybatch node %s [%s]: %s\n", cfg.Role, s.clock.Now().Format(LogTimeLayout), fmt.Sprintf(format, args...))
	}
	s.rec = cluster.NodeRecord{
		Job: key, Role: cfg.Role, Phase: cluster.PhaseStarting,
		SlurmNode: cfg.Getenv("SLURMD_NODENAME"), Started: s.clock.Now().UTC(),
	}
	return s
}

// notices are the job's signals that ask a node to leave Ray rather than
// stop at once.
type notices struct {
	// timeLimit: SIGUSR1, the time-limit warning (--signal=B:USR1@...).
	timeLimit chan struct{}
	// preempted: a SIGTERM that SLURM's preemption sent; the value is when
	// SLURM kills the job.
	preempted chan time.Time
}

// onSignals turns the job's signals into the supervisor's ways to end:
// SIGUSR1 (the time-limit warning) asks for a drain, so does a worker's
// SIGTERM when SLURM preempts its job (preemptedBy), and a rollover
// cluster's head's asks for a handover; anything else cancels. It returns
// the function that stops listening.
func (s *supervisor) onSignals(ctx context.Context, key string, cancel context.CancelCauseFunc, n notices) (stop func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGUSR1 {
				notify(n.timeLimit, struct{}{})
				continue
			}
			if sig == syscall.SIGTERM && preemptionHandled(s.cfg.Role, s.spec.RollsOver()) && s.cfg.Preemption != nil {
				s.termArrived.Store(true)
				if deadline, ok := s.preemptedBy(ctx, s.clock.Now()); ok {
					notify(n.preempted, deadline)
					continue
				}
			}
			if s.cfg.Role == cluster.RoleHead {
				// Before stopping Ray takes its seconds: the workers and
				// drivers free their GPUs without waiting for the record.
				s.cfg.Dir.WriteHeadEnding(cluster.HeadEnding{Job: key, Reason: fmt.Sprintf("cancelled (%s)", sig), At: s.clock.Now().UTC()})
			}
			cancel(fmt.Errorf("cancelled (%s)", sig))
		}
	}()
	return func() { signal.Stop(sigs) }
}

// notify sends v unless a notice is already waiting.
func notify[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
	}
}

func (s *supervisor) save() {
	if err := s.cfg.Dir.WriteNode(s.rec); err != nil {
		s.logf("warning: cannot write node record: %v", err)
	}
}

// finish records how the node ended and reports whether its job ends well.
func (s *supervisor) finish(err error) bool {
	outcome := outcomeOf(err)
	phase, ok := final(outcome, s.wasJoined || s.rec.Phase == cluster.PhaseRunning || s.rec.Phase == cluster.PhaseDraining)
	s.rec.Phase, s.rec.Outcome = phase, outcome
	switch outcome {
	case cluster.OutcomeCompleted:
		s.rec.Reason = cluster.ReasonDriverFinished
	case cluster.OutcomeDrainedTimeLimit:
		s.rec.Reason = cluster.ReasonDrained
	case cluster.OutcomePreempted:
		s.rec.Reason = cluster.ReasonPreempted
	default:
		s.rec.Reason = oneline.Of(err.Error())
	}
	s.logf("%s (%s): %s", s.rec.Phase, s.rec.Outcome, s.rec.Reason)
	s.save()
	return ok
}

func (s *supervisor) run(ctx context.Context, n notices) error {
	p, err := s.prepare(ctx)
	if err != nil {
		return err
	}
	var head cluster.HeadInfo
	if s.cfg.Role != cluster.RoleHead {
		if head, err = s.waitForHead(ctx); err != nil {
			return err
		}
	}
	s.joinGeneration(head)
	for {
		err := s.runGeneration(ctx, p, head, n)
		var next *nextGeneration
		if !errors.As(err, &next) {
			return err
		}
		// A rollover cluster's head handed over: this job follows it
		// into the next generation, in the same allocation (handover.go).
		if head, err = s.enterNext(ctx, next.handover); err != nil {
			return err
		}
	}
}

// runGeneration runs this job's Ray node in one head generation (the only
// one without --rollover): a fresh Ray temp dir, `ray start`, and on the
// head what serves beside it, until the monitor says how it ends.
func (s *supervisor) runGeneration(ctx context.Context, p prepared, head cluster.HeadInfo, n notices) error {
	tmp, err := s.makeTempDir()
	if err != nil {
		return err
	}
	s.rec.TempDir = tmp.private
	logs := s.rayLogDir() // this generation's: a promotion changes the role, not the dir
	defer func() {
		s.keepLogs(tmp.ray, logs)
		os.RemoveAll(tmp.private)
	}()

	s.genStarted = s.clock.Now()
	node, ports, err := s.startNode(ctx, p.ray, p.env, p.ip, p.gpus, tmp.ray, head)
	if err != nil {
		return err
	}
	defer s.stopRay(node)

	s.rec.MetricsExportPort = ports.MetricsExport // a Prometheus target once joined
	var members *membershipTracker
	if s.cfg.Role == cluster.RoleHead {
		var stops headStops
		if members, stops, err = s.serveHead(ctx, p.ip, tmp.ray, ports); err != nil {
			return err
		}
		s.headStops = stops
		defer stops.all() // before Ray stops: no submission, and an empty target list, once the head is going
	}
	s.rec.Phase = cluster.PhaseRunning
	s.save()
	s.logf("ray node up at %s (%d GPUs)", p.ip, p.gpus)
	var driver Process
	if s.cfg.Role == cluster.RoleDriver {
		if err := s.awaitPredecessor(ctx); err != nil {
			return err
		}
		if driver, err = s.startDriver(p.env, head); err != nil {
			return err
		}
		// The driver's whole group, then Ray: it gets a grace period to finish.
		defer func() { grace, _ := stopGraces(s.ending); driver.Stop(driverStopSignal(s.ending), true, grace) }()
	}
	return s.monitor(ctx, node, driver, members, n)
}

// prepared is a node ready to start Ray: the environment after --setup,
// the ray executable, the address it advertises and its GPUs.
type prepared struct {
	env     []string
	ray, ip string
	gpus    int
}

// prepare runs --setup, checks Ray, finds the job's GPUs and address, and
// records them.
func (s *supervisor) prepare(ctx context.Context) (prepared, error) {
	env, err := s.setup(ctx)
	if err != nil {
		return prepared{}, endWith(cluster.OutcomeSetupFailed, err)
	}
	ray, err := s.findRay(ctx, env)
	if err != nil {
		return prepared{}, endWith(cluster.OutcomeSetupFailed, err)
	}
	var gpus []gpu.Device
	if s.cfg.Role != cluster.RoleDriver { // a driver's node takes no actors
		if gpus, err = s.cfg.GPUs.Visible(); err != nil {
			return prepared{}, fmt.Errorf("find the job's GPUs: %w", err)
		}
	}
	ip, err := s.nodeIP(ctx)
	if err != nil {
		return prepared{}, err
	}
	s.rec.IP, s.rec.GPUs = ip, len(gpus)
	s.recordMemory()
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = g.ID
	}
	s.rec.GPUIDs = strings.Join(ids, ",")
	s.save()
	return prepared{env: env, ray: ray, ip: ip, gpus: len(gpus)}, nil
}

// findRay finds the ray executable and, on the head, checks its version:
// on the host, on the PATH --setup left; in the cluster's image, as the
// image has it (a path that exists only inside is fine).
func (s *supervisor) findRay(ctx context.Context, env []string) (string, error) {
	if s.spec.Container != nil {
		return orDefault(s.spec.Ray, "ray"), s.prepareImage(ctx, env)
	}
	ray, err := lookPath(orDefault(s.spec.Ray, "ray"), envValue(env, "PATH"))
	if err != nil {
		return "", fmt.Errorf("find ray after --setup: %w", err)
	}
	if s.cfg.Role == cluster.RoleHead && !s.spec.Insecure {
		return ray, s.checkRayVersion(ctx, ray, env)
	}
	return ray, nil
}

// serveHead starts what runs beside the head's Ray (the observer, the
// autoscaler) and publishes the head; stop stops them. The membership
// snapshot and the node record (its exporter's port) are written, and the
// observer has looked once, before head.json appears: `up --wait` returns
// on head.json, and Prometheus then finds the head's targets at once, not
// one observation later.
func (s *supervisor) serveHead(ctx context.Context, ip, rayTemp string, ports Ports) (members *membershipTracker, stops headStops, err error) {
	dash, err := s.dashboard(ports)
	if err != nil {
		return nil, stops, err
	}
	obs := s.newObserver(ip, rayTemp, ports.Scrape) // observer.go: status, events, /metrics, file_sd
	s.metricsAddr = obs.addr
	s.save()
	members = newMembershipTracker(s.cfg.Dir, dash, s.clock)
	members.refresh(ctx)
	h := s.headInfo(ip, ports)
	stopObserver := obs.start(ctx, h)
	if err := s.publishHead(ctx, h); err != nil {
		stopObserver()
		return nil, stops, err
	}
	stopAutoscaler := func() {}
	if s.cfg.Autoscaler != nil {
		stopAutoscaler = s.startAutoscaler(ctx, ip, ports)
	}
	return members, headStops{autoscaler: sync.OnceFunc(stopAutoscaler), observer: sync.OnceFunc(stopObserver)}, nil
}

// headStops stop what serves beside the head's Ray; each stops once, however
// often called. A handover stops the autoscaler first (handover.go).
type headStops struct{ autoscaler, observer func() }

func (h headStops) all() {
	if h.autoscaler != nil {
		h.autoscaler()
		h.observer()
	}
}

// startAutoscaler runs the autoscaler beside the head's Ray and returns the
// function that stops it and waits until it has.
func (s *supervisor) startAutoscaler(ctx context.Context, ip string, ports Ports) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	head, _, _ := s.cfg.Dir.Head()
	go func() {
		defer close(done)
		s.cfg.Autoscaler.Run(ctx, head)
	}()
	return func() {
		cancel()
		<-done
	}
}
