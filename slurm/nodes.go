package slurm

import (
	"fmt"
	"strings"
)

// nodeFormat is the sinfo -O format ParseNodeGPUs reads. A field with a
// width of 0 is printed in full, and the "|" suffix separates fields without
// padding. GresUsed gives the GPUs in use without a second (squeue) call.
const nodeFormat = "NodeList:0|,Partition:0|,StateLong:0|,Gres:0|,GresUsed:0"

const nodeFields = 5

// NodeGPUs is one node of one partition as sinfo -N sees it: a node in two
// partitions appears twice.
type NodeGPUs struct {
	Node, Partition string
	State           string // sinfo's long state: "idle", "mixed", "drained", "down*", "idle~"...
	Total, Used     int    // GPUs configured and allocated
}

// Free returns the GPUs a new job could be given on the node now. A node
// that is down, drained or draining, not responding, failing, in maintenance
// or about to power down or reboot offers none, whatever its GRES say.
func (n NodeGPUs) Free() int {
	if !schedulable(n.State) || n.Used >= n.Total {
		return 0
	}
	return n.Total - n.Used
}

// schedulable reports whether sinfo's long node state lets new jobs start.
// The state is a base word with optional suffix symbols ("*" no response,
// "~" powered off, "#" powering up, "%" powering down, "!" power down
// pending, "@" reboot pending, "^" rebooting, "$" maintenance reservation,
// "-" planned by the backfill scheduler) and, in some releases, "+FLAG"s.
// A powered-off node still counts: SLURM boots it for the job.
func schedulable(state string) bool {
	words := strings.Split(strings.ToLower(state), "+")
	base := strings.TrimRight(words[0], "*~#%!@^$-")
	if strings.ContainsAny(words[0][len(base):], "*%!@^$") {
		return false
	}
	switch base {
	case "idle", "mixed", "allocated", "completing", "planned":
	default:
		return false
	}
	for _, flag := range words[1:] {
		switch flag {
		case "cloud", "completing", "planned", "powered_down", "powering_up":
		default:
			return false
		}
	}
	return true
}

// ParseNodeGPUs parses sinfo -h -N output in nodeFormat. The default
// partition's trailing "*" is dropped. A line without the format's fields is
// an error naming the line.
func ParseNodeGPUs(out []byte) ([]NodeGPUs, error) {
	var nodes []NodeGPUs
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != nodeFields {
			return nil, fmt.Errorf("parse sinfo line %q: got %d fields, want %d", line, len(f), nodeFields)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		if f[0] == "" {
			return nil, fmt.Errorf("parse sinfo line %q: empty node name", line)
		}
		nodes = append(nodes, NodeGPUs{
			Node:      f[0],
			Partition: strings.TrimSuffix(f[1], "*"),
			State:     f[2],
			Total:     ParseGPUs(f[3]),
			Used:      ParseGPUs(f[4]),
		})
	}
	return nodes, nil
}
