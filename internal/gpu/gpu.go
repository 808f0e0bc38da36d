// Package gpu tells which GPUs a job was given and how they are used: from
// NVML (NVIDIA/go-nvml) when the driver is there, else from the variables
// SLURM sets. nvml types never leave this package; NVML return codes become
// errors at its boundary.
package gpu

import (
	"fmt"
	"strconv"
	"strings"
)

// GPU is one device this node may use.
type Device struct {
	// ID is how the job's environment names it: a CUDA/SLURM index or a UUID.
	ID string
}

// GPUs tells which GPUs the job was given. The environment-based source is the
// fallback; an NVML-backed one can check what the driver really sees.
type Source interface {
	// Visible returns the job's GPUs, in the order CUDA will number them.
	Visible() ([]Device, error)
}

// InventorySource is a Source that also reports each GPU's model, memory,
// utilization and processes (NVML does; the environment cannot).
type InventorySource interface {
	Inventory() (Inventory, error)
}

// Env reads the job's GPUs from the variables SLURM sets in a batch
// script. SLURM_STEP_GPUS is empty outside srun steps, so it is not consulted.
type Env struct{ Getenv func(string) string }

var _ Source = Env{}

// Visible returns the GPUs named by CUDA_VISIBLE_DEVICES, else SLURM_JOB_GPUS,
// else GPU_DEVICE_ORDINAL; none when all are unset.
func (e Env) Visible() ([]Device, error) {
	for _, name := range []string{"CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL"} {
		v := strings.TrimSpace(e.Getenv(name))
		if v == "" {
			continue
		}
		if v == "NoDevFiles" || v == "-1" { // SLURM's and CUDA's spellings of "none"
			return nil, nil
		}
		var gpus []Device
		for _, id := range strings.Split(v, ",") {
			id = strings.TrimSpace(id)
			if id == "" {
				return nil, fmt.Errorf("%s=%q has an empty entry", name, v)
			}
			if _, err := strconv.Atoi(id); err != nil && !strings.HasPrefix(id, "GPU-") && !strings.HasPrefix(id, "MIG-") {
				return nil, fmt.Errorf("%s=%q: %q is neither an index nor a GPU/MIG UUID", name, v, id)
			}
			gpus = append(gpus, Device{ID: id})
		}
		return gpus, nil
	}
	return nil, nil
}
