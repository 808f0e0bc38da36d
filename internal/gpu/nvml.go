package gpu

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ErrMissingGPUs means the job's environment names GPUs that the NVIDIA
// driver does not see (or cannot tell apart).
var ErrMissing = errors.New("the job's GPUs are not all visible to the NVIDIA driver")

// envGPUVars are the variables Env.Visible reads, in its order.
var envGPUVars = []string{"CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL"}

// envGPUVar returns the variable Env takes the job's GPUs from, "" when none is set.
func envGPUVar(getenv func(string) string) string {
	for _, name := range envGPUVars {
		if strings.TrimSpace(getenv(name)) != "" {
			return name
		}
	}
	return ""
}

// Inventory is what the driver reports about the job's GPUs.
type Inventory struct {
	// Source is "NVML", or, when NVML is unavailable, the variable the GPUs
	// were read from (then only Info.ID is known); "" when none is set.
	Source string `json:"source"`
	GPUs   []Info `json:"gpus"`
}

// Info is one GPU (or MIG instance) of the job.
type Info struct {
	// ID is GPU.ID: the UUID when NVML knows it, else the environment's name.
	ID string `json:"id"`
	// Index is the NVML index (of the parent GPU for a MIG instance); nil
	// (JSON null) when unknown: 0 is a real index, and -1 would read as one.
	Index *int   `json:"index"`
	UUID  string `json:"uuid,omitempty"`
	Name  string `json:"name,omitempty"`
	// MIG marks a MIG instance, named by a MIG- UUID.
	MIG         bool   `json:"mig,omitempty"`
	MemoryTotal uint64 `json:"memory_total_bytes"`
	MemoryUsed  uint64 `json:"memory_used_bytes"`
	// UtilizationPct is nil (JSON null) when not reported (MIG instances,
	// errors, no NVML): an idle GPU's 0 must not look like "unknown".
	UtilizationPct *int `json:"utilization_pct"`
	// Processes are the compute processes running on it, anyone's.
	Processes []Process `json:"processes"`
	// Error names the NVML calls that failed for this device; the other
	// fields hold what the calls that worked returned.
	Error string `json:"error,omitempty"`
}

// Process is a compute process using a GPU.
type Process struct {
	PID        int    `json:"pid"`
	UsedMemory uint64 `json:"used_memory_bytes"`
}

// NVML asks the NVIDIA driver, through NVML, which GPUs the node has and
// narrows them to the job's: those named by CUDA_VISIBLE_DEVICES, else
// SLURM_JOB_GPUS, else GPU_DEVICE_ORDINAL (Env's variables and order);
// all of them when none is set.
//
// Three numberings meet here and can differ: CUDA ordinals (the indices in
// CUDA_VISIBLE_DEVICES), NVML indices, and SLURM GRES indices (SLURM_JOB_GPUS,
// which follow the /dev/nvidiaN minor numbers). The supervisor runs Ray with
// CUDA_DEVICE_ORDER=PCI_BUS_ID, so a CUDA ordinal is the device's rank by PCI
// bus id, which is how ordinals are matched here; SLURM_JOB_GPUS entries are
// matched by minor number. UUIDs need neither, so GPUs are named and matched
// by UUID whenever NVML knows it (a GPU- UUID may be a unique prefix, as CUDA
// accepts). MIG- UUIDs are counted as given.
//
// When NVML cannot start (no driver: ERROR_LIBRARY_NOT_FOUND), each call
// writes one line to warn and answers from the environment as Env does.
type NVML struct {
	lib    nvml.Interface
	getenv func(string) string
	warn   io.Writer
}

var _ Source = (*NVML)(nil)

// NewNVMLGPUs reads GPUs through lib (nvml.New(), or a mock in tests) and the
// job's environment through getenv; the fallback notice goes to warn.
func NewNVML(lib nvml.Interface, getenv func(string) string, warn io.Writer) *NVML {
	if warn == nil {
		warn = io.Discard
	}
	return &NVML{lib: lib, getenv: getenv, warn: warn}
}

// SystemGPUs is NewNVMLGPUs with the system's NVML library, loaded on first use.
func System(getenv func(string) string, warn io.Writer) *NVML {
	return NewNVML(nvml.New(), getenv, warn)
}

// Visible returns the job's GPUs in the order CUDA will number them. It fails
// with ErrMissingGPUs when the environment names a GPU the driver does not see.
func (n *NVML) Visible() ([]Device, error) {
	if !n.start() {
		return Env{Getenv: n.getenv}.Visible()
	}
	defer n.lib.Shutdown() // what was read is read; a failed shutdown changes nothing
	sel, err := n.selectGPUs()
	if err != nil {
		return nil, err
	}
	gpus := make([]Device, len(sel))
	for i, s := range sel {
		gpus[i] = Device{ID: s.id}
	}
	return gpus, nil
}

// Inventory describes the GPUs Visible returns. An NVML error on one device is
// reported in its GPUInfo.Error; the others are still described.
func (n *NVML) Inventory() (Inventory, error) {
	if !n.start() {
		gpus, err := Env{Getenv: n.getenv}.Visible()
		if err != nil {
			return Inventory{}, err
		}
		inv := Inventory{Source: envGPUVar(n.getenv), GPUs: []Info{}}
		for _, g := range gpus {
			inv.GPUs = append(inv.GPUs, Info{ID: g.ID, Processes: []Process{}})
		}
		return inv, nil
	}
	defer n.lib.Shutdown()
	sel, err := n.selectGPUs()
	if err != nil {
		return Inventory{}, err
	}
	inv := Inventory{Source: "NVML", GPUs: make([]Info, len(sel))}
	for i, s := range sel {
		if s.dev != nil {
			inv.GPUs[i] = describeGPU(s.dev)
		} else {
			inv.GPUs[i] = n.describeMIG(s.id)
		}
	}
	return inv, nil
}

// start initialises NVML, or says why it falls back to the environment.
func (n *NVML) start() bool {
	ret := n.lib.Init()
	if ret == nvml.SUCCESS {
		return true
	}
	using := "no " + strings.Join(envGPUVars[:2], " or ") + " set, so no GPUs"
	if name := envGPUVar(n.getenv); name != "" {
		using = "using " + name
	}
	fmt.Fprintf(n.warn, "NVML unavailable: %s; %s\n", nvml.ErrorString(ret), using)
	return false
}

func nvmlError(op string, ret nvml.Return) error {
	return fmt.Errorf("nvml %s: %s", op, nvml.ErrorString(ret))
}

// device is one GPU as NVML enumerates it.
type device struct {
	handle  nvml.Device // nil when the handle could not be had
	index   int         // NVML index
	ordinal int         // CUDA ordinal under CUDA_DEVICE_ORDER=PCI_BUS_ID
	minor   int         // /dev/nvidiaN; -1 when unknown
	uuid    string      // "" when unknown
	pci     [3]uint32   // domain, bus, device
	pciOK   bool
	errs    []error
}

// devices lists every device NVML sees, in CUDA ordinal order.
func (n *NVML) devices() ([]*device, error) {
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nvmlError("get device count", ret)
	}
	devs := make([]*device, count)
	allPCI := true
	for i := range devs {
		d := &device{index: i, minor: -1}
		devs[i] = d
		h, ret := n.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			d.errs = append(d.errs, nvmlError("get device handle", ret))
			allPCI = false
			continue
		}
		d.handle = h
		if d.uuid, ret = h.GetUUID(); ret != nvml.SUCCESS {
			d.errs = append(d.errs, nvmlError("get UUID", ret))
		}
		if minor, ret := h.GetMinorNumber(); ret == nvml.SUCCESS {
			d.minor = minor
		} else {
			d.errs = append(d.errs, nvmlError("get minor number", ret))
		}
		if p, ret := h.GetPciInfo(); ret == nvml.SUCCESS {
			d.pci, d.pciOK = [3]uint32{p.Domain, p.Bus, p.Device}, true
		} else {
			allPCI = false
			d.errs = append(d.errs, nvmlError("get PCI info", ret))
		}
	}
	// NVML enumerates in PCI order in practice, but does not promise it; sort
	// so ordinals are right either way, and keep NVML's order if any bus id is unknown.
	if allPCI {
		slices.SortStableFunc(devs, func(a, b *device) int {
			for k := range a.pci {
				if a.pci[k] != b.pci[k] {
					if a.pci[k] < b.pci[k] {
						return -1
					}
					return 1
				}
			}
			return 0
		})
	}
	for i, d := range devs {
		d.ordinal = i
	}
	return devs, nil
}

// selected is one of the job's GPUs.
type selected struct {
	id  string  // GPU.ID
	dev *device // nil for a MIG instance
}

// selectGPUs matches the job's environment against what NVML sees.
func (n *NVML) selectGPUs() ([]selected, error) {
	devs, err := n.devices()
	if err != nil {
		return nil, err
	}
	name := envGPUVar(n.getenv)
	if name == "" {
		sel := make([]selected, len(devs))
		for i, d := range devs {
			sel[i] = selected{id: d.id(strconv.Itoa(d.ordinal)), dev: d}
		}
		return sel, nil
	}
	named, err := Env{Getenv: n.getenv}.Visible() // validates the syntax
	if err != nil {
		return nil, err
	}
	value := name + "=" + strings.TrimSpace(n.getenv(name))
	var sel []selected
	var missing []string
	whole := 0 // entries that name whole GPUs, not MIG instances
	taken := map[*device]string{}
	for _, g := range named {
		if strings.HasPrefix(g.ID, "MIG-") {
			sel = append(sel, selected{id: g.ID})
			continue
		}
		whole++
		d, err := findDevice(devs, name, g.ID)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", value, err)
		}
		if d == nil {
			missing = append(missing, g.ID)
			continue
		}
		if prev, dup := taken[d]; dup {
			return nil, fmt.Errorf("%s: %s and %s are the same GPU", value, prev, g.ID)
		}
		taken[d] = g.ID
		sel = append(sel, selected{id: d.id(g.ID), dev: d})
	}
	switch {
	case whole > len(devs):
		return nil, fmt.Errorf("%w: the job was given %d GPUs (%s) but the driver sees %d%s",
			ErrMissing, whole, value, len(devs), describeDevices(devs))
	case len(missing) > 0:
		return nil, fmt.Errorf("%w: %s names %s, which the driver does not see; it sees %d%s",
			ErrMissing, value, strings.Join(missing, ","), len(devs), describeDevices(devs))
	}
	if name == "SLURM_JOB_GPUS" {
		// Nothing restricts CUDA by name, so it numbers what it can open in bus order.
		slices.SortStableFunc(sel, func(a, b selected) int { return a.dev.ordinal - b.dev.ordinal })
	}
	return sel, nil
}

// findDevice returns the device an entry of the variable name means; nil when
// none does, an error when the entry is ambiguous.
func findDevice(devs []*device, name, id string) (*device, error) {
	if k, err := strconv.Atoi(id); err == nil {
		for _, d := range devs {
			if (name == "SLURM_JOB_GPUS" && d.minor == k) || (name != "SLURM_JOB_GPUS" && d.ordinal == k) {
				return d, nil
			}
		}
		return nil, nil
	}
	var found *device
	for _, d := range devs {
		if d.uuid != "" && strings.HasPrefix(d.uuid, id) {
			if found != nil {
				return nil, fmt.Errorf("%s is a prefix of more than one GPU's UUID (%s, %s)", id, found.uuid, d.uuid)
			}
			found = d
		}
	}
	return found, nil
}

// id is the device's UUID, else what the environment called it.
func (d *device) id(fallback string) string {
	if d.uuid != "" {
		return d.uuid
	}
	return fallback
}

func describeDevices(devs []*device) string {
	if len(devs) == 0 {
		return ""
	}
	parts := make([]string, len(devs))
	for i, d := range devs {
		parts[i] = d.id("NVML index " + strconv.Itoa(d.index))
	}
	return ": " + strings.Join(parts, ", ")
}

// describeGPU reads what the gpus command shows about a whole GPU.
func describeGPU(d *device) Info {
	info := Info{ID: d.id(strconv.Itoa(d.ordinal)), Index: new(d.index), UUID: d.uuid, Processes: []Process{}}
	errs := d.errs
	if h := d.handle; h != nil {
		var ret nvml.Return
		if info.Name, ret = h.GetName(); ret != nvml.SUCCESS {
			errs = append(errs, nvmlError("get name", ret))
		}
		if mem, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
			info.MemoryTotal, info.MemoryUsed = mem.Total, mem.Used
		} else {
			errs = append(errs, nvmlError("get memory info", ret))
		}
		if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
			info.UtilizationPct = new(int(u.Gpu))
		} else if ret != nvml.ERROR_NOT_SUPPORTED { // e.g. MIG mode on: not an error
			errs = append(errs, nvmlError("get utilization", ret))
		}
		var err error
		if info.Processes, err = processes(h); err != nil {
			errs = append(errs, err)
		}
	}
	info.Error = joinErrors(errs)
	return info
}

// describeMIG reads what NVML tells about a MIG instance named by its UUID.
func (n *NVML) describeMIG(uuid string) Info {
	info := Info{ID: uuid, UUID: uuid, MIG: true, Processes: []Process{}}
	h, ret := n.lib.DeviceGetHandleByUUID(uuid)
	if ret != nvml.SUCCESS {
		info.Error = nvmlError("get MIG device by UUID", ret).Error()
		return info
	}
	var errs []error
	if info.Name, ret = h.GetName(); ret != nvml.SUCCESS {
		errs = append(errs, nvmlError("get name", ret))
	}
	if mem, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
		info.MemoryTotal, info.MemoryUsed = mem.Total, mem.Used
	} else {
		errs = append(errs, nvmlError("get memory info", ret))
	}
	var err error
	if info.Processes, err = processes(h); err != nil {
		errs = append(errs, err)
	}
	if parent, ret := h.GetDeviceHandleFromMigDeviceHandle(); ret != nvml.SUCCESS {
		errs = append(errs, nvmlError("get MIG parent", ret))
	} else if index, ret := parent.GetIndex(); ret != nvml.SUCCESS {
		errs = append(errs, nvmlError("get MIG parent index", ret))
	} else {
		info.Index = &index
	}
	info.Error = joinErrors(errs)
	return info
}

func processes(h nvml.Device) ([]Process, error) {
	ps, ret := h.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS {
		return []Process{}, nvmlError("get compute processes", ret)
	}
	out := make([]Process, len(ps))
	for i, p := range ps {
		used := p.UsedGpuMemory
		if used == math.MaxUint64 { // NVML_VALUE_NOT_AVAILABLE
			used = 0
		}
		out[i] = Process{PID: int(p.Pid), UsedMemory: used}
	}
	return out, nil
}

func joinErrors(errs []error) string {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}
