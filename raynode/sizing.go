package raynode

import (
	"context"
	"net"
	"runtime"
	"strconv"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

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

func (s *supervisor) startParams(ip string, gpus int, ports Ports, tmp string, head cluster.HeadInfo) StartParams {
	p := StartParams{
		Head: s.cfg.Role == cluster.RoleHead,
		Params: map[string]string{
			"node-ip-address": ip,
			"num-gpus":        strconv.Itoa(gpus),
			"num-cpus":        strconv.Itoa(s.spec.RayCPUs(gpus, s.cpus())),
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
	p.NodeGroup = s.cfg.WorkerType.Name
	for k, v := range s.cfg.WorkerType.Resources {
		p.Resources[k] = v
	}
	for k, v := range s.cfg.WorkerType.Labels {
		p.Labels[k] = v
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
	return jobMemMB(s.cfg.Getenv, s.cpus()) << 20
}

// jobMemMB is a job's memory in MB from the environment SLURM (and the
// local backend) gives it: SLURM_MEM_PER_NODE, else SLURM_MEM_PER_CPU
// times its cpus; 0 when neither is set (no --mem: the whole node).
func jobMemMB(getenv func(string) string, cpus int) int64 {
	if mb, err := strconv.ParseInt(getenv("SLURM_MEM_PER_NODE"), 10, 64); err == nil && mb > 0 {
		return mb
	}
	if mb, err := strconv.ParseInt(getenv("SLURM_MEM_PER_CPU"), 10, 64); err == nil && mb > 0 {
		return mb * int64(cpus)
	}
	return 0
}

// recordMemory records the job's memory and its node's object store in its
// record, for the head's promote-or-submit decision (candidates).
func (s *supervisor) recordMemory() {
	mem := s.memoryBytes()
	switch {
	case mem > 0:
		s.rec.MemMB, s.rec.ObjectStoreMB = int(mem>>20), int(s.objectStoreBytes(mem)>>20)
	case s.spec.ObjectStoreMB > 0:
		s.rec.ObjectStoreMB = s.spec.ObjectStoreMB
	}
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
