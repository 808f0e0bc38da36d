package raynode

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ Lo, Hi int }

// DefaultPortRange lies below Linux's ephemeral range (32768+), so outgoing
// connections never take a port a Ray node was given.
var DefaultPortRange = PortRange{Lo: 20000, Hi: 32767}

// ParsePortRange reads "LO-HI".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || l < 1024 || h > 65535 || h-l+1 < minBlock {
		return PortRange{}, fmt.Errorf("invalid --port-range %q: give LO-HI with 1024 <= LO, HI <= 65535 and at least %d ports", s, minBlock)
	}
	return PortRange{Lo: l, Hi: h}, nil
}

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// Ports of one Ray node. Every port a Ray node listens on is named here, so
// two nodes on one host (of any cluster or user) never share one — Ray's
// defaults (52365 for the agent, 10002-19999 for workers) are what collide.
type Ports struct {
	GCS, Dashboard, ClientServer int // head only
	// The head's autoscaler and dashboard export metrics on fixed ports
	// (44217, 44227) unless told otherwise through the environment.
	AutoscalerMetrics, DashboardMetrics int // head only
	NodeManager, ObjectManager          int
	AgentListen, AgentGRPC              int
	MetricsExport, RuntimeEnv           int
	// Scrape is the head supervisor's own /metrics (head only; not Ray's):
	// in the block, so it can never be one of this or another node's
	// worker ports.
	Scrape               int
	MinWorker, MaxWorker int
}

const (
	namedPorts     = 12
	minWorkerPorts = 16
	minBlock       = namedPorts + minWorkerPorts
	maxBlock       = namedPorts + 64
)

// Params adds the node's ports to ray start params.
func (p Ports) Params(head bool, params map[string]string) {
	set := func(k string, v int) { params[k] = strconv.Itoa(v) }
	if head {
		set("port", p.GCS)
		set("dashboard-port", p.Dashboard)
		set("ray-client-server-port", p.ClientServer)
	}
	set("node-manager-port", p.NodeManager)
	set("object-manager-port", p.ObjectManager)
	set("dashboard-agent-listen-port", p.AgentListen)
	set("dashboard-agent-grpc-port", p.AgentGRPC)
	set("metrics-export-port", p.MetricsExport)
	set("runtime-env-agent-port", p.RuntimeEnv)
	set("min-worker-port", p.MinWorker)
	set("max-worker-port", p.MaxWorker)
}

// Env adds the ports Ray takes only from the environment (head only).
func (p Ports) Env(head bool) []string {
	if !head {
		return nil
	}
	return []string{
		"AUTOSCALER_METRIC_PORT=" + strconv.Itoa(p.AutoscalerMetrics),
		"DASHBOARD_METRIC_PORT=" + strconv.Itoa(p.DashboardMetrics),
	}
}

// All lists every port of the plan.
func (p Ports) All() []int {
	ports := []int{p.GCS, p.Dashboard, p.ClientServer, p.AutoscalerMetrics, p.DashboardMetrics,
		p.NodeManager, p.ObjectManager, p.AgentListen, p.AgentGRPC, p.MetricsExport, p.RuntimeEnv, p.Scrape}
	for w := p.MinWorker; w <= p.MaxWorker; w++ {
		ports = append(ports, w)
	}
	return ports
}

// AllocatePorts picks a random block of currently free ports inside r. Nodes
// starting at the same moment may still pick the same block; the supervisor
// retries with a new block when `ray start` fails before the node is up.
func AllocatePorts(r PortRange, free func(port int) bool) (Ports, error) {
	if r.Hi-r.Lo+1 < minBlock {
		return Ports{}, fmt.Errorf("port range %s holds fewer than %d ports: widen --port-range", r, minBlock)
	}
	size := min(maxBlock, r.Hi-r.Lo+1)
	blocks := (r.Hi - r.Lo + 1) / size
	order := rand.Perm(blocks)
	for _, b := range order {
		lo := r.Lo + b*size
		ok := true
		for port := lo; port < lo+size && ok; port++ {
			ok = free(port)
		}
		if !ok {
			continue
		}
		n := func(i int) int { return lo + i }
		return Ports{
			GCS: n(0), Dashboard: n(1), ClientServer: n(2), NodeManager: n(3), ObjectManager: n(4),
			AgentListen: n(5), AgentGRPC: n(6), MetricsExport: n(7), RuntimeEnv: n(8),
			AutoscalerMetrics: n(9), DashboardMetrics: n(10), Scrape: n(11),
			MinWorker: n(namedPorts), MaxWorker: lo + size - 1,
		}, nil
	}
	return Ports{}, fmt.Errorf("no block of %d free ports in %s: widen --port-range or stop other Ray nodes on this host", size, r)
}

// PortFree reports whether nothing listens on port on any address of the host:
// binding the wildcard address fails when any address has it.
func PortFree(port int) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
