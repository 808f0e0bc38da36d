package local

// The words of claim errors: who holds a GPU, and why none is free.

import (
	"fmt"
	"strconv"
	"strings"
)

func (h Holder) describe() string {
	parts := []string{"pid " + strconv.Itoa(h.PID)}
	if h.User != "" {
		parts = append(parts, "user "+h.User)
	}
	if h.Cluster != "" {
		parts = append(parts, "cluster "+h.Cluster)
	}
	if h.Job != "" {
		parts = append(parts, "job "+h.Job)
	}
	return strings.Join(parts, ", ")
}

func (g GPU) describe() string {
	switch {
	case g.Holder != nil:
		return g.Name() + " held by " + g.Holder.describe()
	case len(g.Foreign) > 0:
		pids := make([]string, len(g.Foreign))
		for i, p := range g.Foreign {
			pids[i] = strconv.Itoa(p)
		}
		return g.Name() + " busy with processes not started by sraybatch (pid " + strings.Join(pids, ", ") + ")"
	}
	return g.Name() + " free"
}

func noGPUError(n int, gpus []GPU, source string) error {
	if len(gpus) == 0 {
		from := "no NVIDIA driver, and CUDA_VISIBLE_DEVICES is unset"
		switch source {
		case "NVML":
			from = "the NVIDIA driver sees none"
		case "":
		default:
			from = "no NVIDIA driver, and " + source + " names none"
		}
		return fmt.Errorf("%w: the job needs %s, but this host has none (%s): use --gpus-per-node 0 for CPU-only nodes", ErrNoGPU, plural(n, "GPU"), from)
	}
	if len(gpus) < n {
		return fmt.Errorf("%w: the job needs %s, this host has %d", ErrNoGPU, plural(n, "GPU"), len(gpus))
	}
	parts := make([]string, len(gpus))
	for i, g := range gpus {
		parts[i] = g.describe()
	}
	return fmt.Errorf("%w: the job needs %s: %s; free one with `sraybatch down`, or wait", ErrNoGPU, plural(n, "GPU"), strings.Join(parts, "; "))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
