package slurm

import (
	"fmt"
	"strings"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// nodeFormat is the sinfo -O format ParseNodeGPUs reads. A field with a
// width of 0 is printed in full, and the "|" suffix separates fields without
// padding. GresUsed gives the GPUs in use without a second (squeue) call.
const nodeFormat = "NodeList:0|,Partition:0|,StateLong:0|,Gres:0|,GresUsed:0"

const nodeFields = 5

// ParseNodeGPUs parses sinfo -h -N output in nodeFormat. The default
// partition's trailing "*" is dropped. A line without the format's fields is
// an error naming the line.
func ParseNodeGPUs(out []byte) ([]scheduler.NodeGPUs, error) {
	var nodes []scheduler.NodeGPUs
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
		nodes = append(nodes, scheduler.NodeGPUs{
			Node:      f[0],
			Partition: strings.TrimSuffix(f[1], "*"),
			State:     f[2],
			Total:     ParseGPUs(f[3]),
			Used:      ParseGPUs(f[4]),
		})
	}
	return nodes, nil
}
