package raynode

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

const (
	startTimeout = 3 * time.Minute
	// rayDrainSeconds bounds Ray's own drain on SIGTERM (Ray's default: 30 s).
	rayDrainSeconds = "2"
	// workerGCSReconnect bounds how long a worker's raylet waits for a lost
	// head's GCS before exiting, matched to how soon the supervisor decides a
	// silent head is lost (headSilentAfter + a tick + gcsProbeTimeout);
	// Ray's default is 60 s.
	workerGCSReconnect = "10"
)

// startNode starts this job's Ray node on a fresh block of ports and returns
// once it serves; a port lost to a race between allocation and bind is
// retried on another block (retryStart).
func (s *supervisor) startNode(ctx context.Context, ray string, env []string, ip string, gpus int, tmp string, head cluster.HeadInfo) (Process, Ports, error) {
	portRange := DefaultPortRange
	if s.spec.PortRange != "" {
		var err error
		if portRange, err = ParsePortRange(s.spec.PortRange); err != nil {
			return nil, Ports{}, err
		}
	}
	for attempt := 1; ; attempt++ {
		ports, err := AllocatePorts(portRange, PortFree)
		if err != nil {
			return nil, ports, err
		}
		params := s.startParams(ip, gpus, ports, tmp, head)
		// Ray's processes on this node (tasks, actors, Ray Train's helpers)
		// that look up their cluster find it through RAY_ADDRESS; without it
		// they scan the host for GCS processes, and on a host shared with
		// another cluster's head they find two and fail.
		gcsAddress := head.Address
		if params.Head {
			gcsAddress = net.JoinHostPort(ip, strconv.Itoa(ports.GCS))
		}
		nodeEnv := append(withoutKeys(s.generationEnv(env), "AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT", "RAY_ADDRESS"), ports.Env(params.Head)...)
		node, err := s.startRay(ray, params, append(nodeEnv, "RAY_ADDRESS="+gcsAddress), filepath.Dir(tmp), gpus > 0)
		if err != nil {
			return nil, ports, err
		}
		err = s.waitUp(ctx, node, ports)
		if err == nil {
			return node, ports, nil
		}
		s.stopRay(node)
		if !retryStart(err, attempt, ctx.Err() != nil) {
			return nil, ports, err
		}
		s.logf("ray start failed (%v); retrying with other ports (attempt %d of %d)", err, attempt+1, startAttempts)
	}
}

// startRay starts `ray start --block` (inside the cluster's image when it
// has one); private is the node's private temp dir, which holds Ray's.
func (s *supervisor) startRay(ray string, p StartParams, env []string, private string, gpus bool) (Process, error) {
	argv := p.Argv()
	s.logf("%s %s", ray, strings.Join(argv, " "))
	// CUDA numbers GPUs by PCI bus, like NVML and SLURM, not fastest-first.
	env = append(withoutKeys(env, "CUDA_DEVICE_ORDER"), "CUDA_DEVICE_ORDER=PCI_BUS_ID")
	if envValue(env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S") == "" {
		env = append(env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="+rayDrainSeconds)
	}
	for _, kv := range p.Env() {
		k, _, _ := strings.Cut(kv, "=")
		env = append(withoutKeys(env, k), kv)
	}
	if s.cfg.Role != cluster.RoleHead && envValue(env, "RAY_gcs_rpc_server_reconnect_timeout_s") == "" {
		env = append(env, "RAY_gcs_rpc_server_reconnect_timeout_s="+workerGCSReconnect)
	}
	cmd := s.command(ray, argv, env, private, gpus)
	w := io.MultiWriter(s.cfg.Log, s.tail)
	cmd.Stdout, cmd.Stderr = w, w
	node, err := s.start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", ray, err)
	}
	return node, nil
}

// waitUp returns once the node serves: the head when its GCS answers healthy
// through the dashboard, a worker when the head's membership snapshot shows
// it alive (a listening raylet may still fail to register).
func (s *supervisor) waitUp(ctx context.Context, node Process, ports Ports) error {
	deadline := s.clock.Now().Add(startTimeout)
	var dash dashboardClient
	if s.cfg.Role == cluster.RoleHead {
		var err error
		if dash, err = s.dashboard(ports); err != nil {
			return err
		}
	}
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-node.Done():
			return fmt.Errorf("%w (%v): %s", errExitedEarly, node.Err(), s.tail.String())
		case <-s.clock.After(300 * time.Millisecond):
		}
		if s.clock.Now().After(deadline) {
			err := fmt.Errorf("ray node not up within %s: %s", startTimeout, s.tail.String())
			if s.cfg.Role != cluster.RoleHead {
				return endWith(cluster.OutcomeJoinFailed, err)
			}
			return err
		}
		if s.cfg.Role == cluster.RoleHead {
			if dash.healthy(ctx) {
				return nil
			}
			continue
		}
		if m, err := s.cfg.Dir.Membership(); err == nil {
			if me := m.Nodes[s.rec.Job]; me != nil && me.Alive && me.LastSeen.After(s.joinedSince()) {
				return nil
			}
		}
		// A head that hands over already: this node goes on to the next
		// generation rather than join this one.
		if next, ok := s.handoverNotice(); ok {
			return next
		}
		// A head that is gone or frozen never lets this node join: give up
		// rather than hold the GPUs until the start timeout.
		if n%7 == 6 {
			if reason := s.headGone(ctx); reason != "" {
				return endWith(cluster.OutcomeJoinFailed, fmt.Errorf("head job %s %s while this node was joining", s.cfg.HeadJob, reason))
			}
		}
	}
}

// dashboard is a client of this head's dashboard, with the cluster's token.
func (s *supervisor) dashboard(ports Ports) (dashboardClient, error) {
	token, err := s.rayToken()
	if err != nil {
		return dashboardClient{}, fmt.Errorf("ask the head's dashboard: %w", err)
	}
	return dashboardClient{base: "http://127.0.0.1:" + strconv.Itoa(ports.Dashboard), token: token, insecure: s.spec.Insecure}, nil
}

// headInfo is what the head publishes in head.json.
func (s *supervisor) headInfo(ip string, ports Ports) cluster.HeadInfo {
	return cluster.HeadInfo{
		Job: s.rec.Job, Address: net.JoinHostPort(ip, strconv.Itoa(ports.GCS)), NodeIP: ip,
		Dashboard: "http://127.0.0.1:" + strconv.Itoa(ports.Dashboard), SlurmNode: s.rec.SlurmNode,
		RayVersion: s.rayVersion, Published: s.clock.Now().UTC(), Metrics: s.metricsAddr,
	}
}

// generationEnv points env's RAY_AUTH_TOKEN_PATH at the token of this
// node's generation: the job's script names the first generation's, and a
// node in a later generation, in the same job, must present that one's.
// Without generations (and in the first) env is left as it is.
func (s *supervisor) generationEnv(env []string) []string {
	if s.rollover.gen <= 1 {
		return env
	}
	return append(withoutKeys(env, "RAY_AUTH_TOKEN_PATH"), "RAY_AUTH_TOKEN_PATH="+s.rollover.token)
}

// stopRay stops the node's processes: SIGTERM to `ray start --block` (which
// stops its children gracefully), then every process left below this
// subreaper, wherever Ray put it. Never `ray stop`: it kills every Ray on the host.
func (s *supervisor) stopRay(node Process) {
	grace, leftovers := stopGraces(s.ending)
	node.Stop(syscall.SIGTERM, false, grace) // `ray start --block` stops its own children on SIGTERM
	if n := s.procs.StopLeftovers(leftovers); n > 0 {
		s.logf("stopped %d leftover Ray processes", n)
	}
}

// joinedSince is when this node's current Ray started: a membership entry
// older than that is of an earlier generation's node of this job.
func (s *supervisor) joinedSince() time.Time {
	if s.rollover.gen > 1 {
		return s.genStarted
	}
	return s.rec.Started
}
