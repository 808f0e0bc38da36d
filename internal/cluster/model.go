// Package cluster is sraybatch's model of an elastic Ray cluster: the spec a
// user asked for, the records its jobs publish, and the observed status derived
// from them and from SLURM. Every state word shown to users is defined here once.
package cluster

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// SchemaVersion is written into every state file; a reader refuses files from
// a newer sraybatch instead of misreading them.
const SchemaVersion = 1

// Role is what a job does in the Ray cluster.
type Role string

const (
	RoleHead   Role = "head"
	RoleWorker Role = "worker"
	RoleDriver Role = "driver"
)

// Membership is a job's relation to the Ray cluster; status, JSON output and
// tests use exactly these words.
type Membership string

const (
	// MembershipWaiting: pending in SLURM, or started but not yet in Ray.
	MembershipWaiting Membership = "waiting"
	// MembershipJoined: the job's Ray node is alive in the cluster.
	MembershipJoined Membership = "joined"
	// MembershipDraining: joined, but leaving soon (time limit); gets no new work.
	MembershipDraining Membership = "draining"
	// MembershipLost: was joined and is no longer alive, without being asked to leave.
	MembershipLost Membership = "lost"
	// MembershipFailed: never joined; the job's record carries the reason.
	MembershipFailed Membership = "failed"
	// MembershipEnded: left in an orderly way (down, drained, completed),
	// also while its job, asked to leave, has yet to record the end.
	MembershipEnded Membership = "ended"
)

// State is the state of the whole cluster.
type State string

const (
	StatePending State = "pending"
	StateRunning State = "running"
	StateFailed  State = "failed"
	StateEnded   State = "ended"
)

// Backend runs the cluster's nodes.
type Backend string

const (
	BackendSlurm Backend = "slurm"
	// BackendLocal runs every node as a process of one host, without SLURM.
	BackendLocal Backend = "local"
)

// validName is ^[a-z0-9][a-z0-9-]{0,39}$ written out: every command checks
// a name, and that regexp compiled (at start, to 45 KB: the {0,39} is
// unrolled) cost every command its time whether it checked one or not.
func validName(name string) bool {
	if len(name) < 1 || len(name) > 40 || name[0] == '-' {
		return false
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// ValidateName accepts names that are safe as job names, directory names and
// Ray resource names without quoting.
func ValidateName(name string) error {
	if !validName(name) {
		return fmt.Errorf("invalid cluster name %q: use 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit", name)
	}
	return nil
}

// JobName is the scheduler's job name of a role in a cluster: status finds a
// cluster's jobs by these names, and the local backend reads the cluster back
// from one (ClusterOfJobName).
func JobName(clusterName string, role Role) string {
	return "sray-" + clusterName + "-" + string(role)
}

// ClusterOfJobName is the inverse of JobName; ok is false for a job name
// JobName did not make.
func ClusterOfJobName(jobName string) (clusterName string, ok bool) {
	for _, role := range []Role{RoleHead, RoleWorker, RoleDriver} {
		if name, found := strings.CutSuffix(jobName, "-"+string(role)); found {
			if name, found = strings.CutPrefix(name, "sray-"); found && ValidateName(name) == nil {
				return name, true
			}
		}
	}
	return "", false
}

// JobLog is the file the scheduler writes a job's output to; key is the job
// key ("8", or "7_0" for an array task).
func JobLog(logDir, clusterName string, role Role, key string) string {
	return filepath.Join(logDir, JobName(clusterName, role)+"-"+key+".out")
}

// JobLogPattern is JobLog as an sbatch --output pattern (%j, or %A_%a for an array).
func JobLogPattern(logDir, clusterName string, role Role, array bool) string {
	key := "%j"
	if array {
		key = "%A_%a"
	}
	return logDir + "/" + JobName(clusterName, role) + "-" + key + ".out"
}

// AuthMode is the RAY_AUTH_MODE of every node and client of a cluster.
// Ray >= 2.59 turns auth on by itself when a token file exists, so the mode
// is always said explicitly.
func AuthMode(insecure bool) string {
	if insecure {
		return "disabled"
	}
	return "token"
}

// CurrentUser is the name of the user this process runs as: the owner of
// the clusters it starts and of the jobs it lists.
func CurrentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// Spec is what the user asked for with `up`; written once, read by every command and job.
type Spec struct {
	SchemaVersion int       `json:"schema_version"`
	Name          string    `json:"name"`
	ID            string    `json:"id"`
	Backend       Backend   `json:"backend"`
	User          string    `json:"user"`
	Created       time.Time `json:"created"`
	// Insecure clusters run without Ray token auth (only with `up --insecure`).
	Insecure bool     `json:"insecure"`
	Node     NodeSpec `json:"node"`
	// WorkerPartition is where worker jobs (grow, the autoscaler) go when
	// it differs from the head's Node.Partition: a preemptible partition,
	// say, while the head stays where `up` put it. Empty: Node.Partition.
	WorkerPartition string `json:"worker_partition,omitempty"`
	// Ray is the `ray` executable, resolved on the compute node after --setup.
	Ray string `json:"ray"`
	// LogDir holds SLURM output files and the Ray logs each node keeps.
	LogDir string `json:"log_dir"`
	// PortRange "LO-HI" confines every port a Ray node listens on; empty: any free port.
	PortRange string `json:"port_range,omitempty"`
	// NodeIP / Interface override the address Ray nodes advertise.
	NodeIP    string `json:"node_ip,omitempty"`
	Interface string `json:"interface,omitempty"`
	// ObjectStoreMB caps each node's object store; 0 derives it from the job's memory.
	ObjectStoreMB int `json:"object_store_mb,omitempty"`
	// DrainBeforeS is how long before its time limit SLURM warns a job
	// (USR1): workers leave Ray cleanly, the head and drivers are warned.
	DrainBeforeS int `json:"drain_before_s"`
	// Autoscale is written by `up` and changed by `autoscale` (one writer at
	// a time); the head's autoscaler rereads it every poll.
	Autoscale AutoscaleSpec `json:"autoscale"`
	// MetricsSDDir gets a world-readable copy of the cluster's Prometheus
	// file_sd targets (a site's Prometheus cannot read the cluster
	// directory); empty: the cluster directory's copy only.
	MetricsSDDir string `json:"metrics_sd_dir,omitempty"`
	// Rollover hands the cluster from head to head before each head's
	// end (`up --rollover`); absent: the head's end is the cluster's.
	Rollover *RolloverSpec `json:"rollover,omitempty"`
	// Workers are the worker types of a cluster file's `workers:`, in the
	// file's order, each with its allocation resolved at `up`; absent (a
	// cluster started without them, or before types existed): one implicit
	// type, DefaultTypeName, of WorkerNode's shape. Read them through Types.
	Workers []WorkerType `json:"workers,omitempty"`
	// Container runs every Ray process of the cluster (its nodes, the
	// drivers' Python) inside an image (`up --container`); absent: on the
	// host, from what --setup left.
	Container *ContainerSpec `json:"container,omitempty"`
}

// ContainerSpec is the image a cluster runs in, resolved once at `up`, so
// grow, the autoscaler and train start the same.
type ContainerSpec struct {
	// Image is the image's absolute path: a directory, a SquashFS file, a SIF…
	Image string `json:"image"`
	// Runtime runs it: charliecloud, apptainer, enroot, pyxis or podman-hpc.
	Runtime string `json:"runtime"`
	// Mounts are the user's --container-mount SRC:DST binds.
	Mounts []string `json:"mounts,omitempty"`
	// Env names the variables of the node's environment (after --setup)
	// that go in besides Ray's own (--container-env).
	Env []string `json:"env,omitempty"`
	// RayVersion and PythonVersion are what `up` found inside the image.
	RayVersion    string `json:"ray_version,omitempty"`
	PythonVersion string `json:"python_version,omitempty"`
}

// RolloverSpec are the settings of a cluster that outlives its heads
// (generation.go).
type RolloverSpec struct {
	// BeforeS: a head hands over once SLURM gives it less than this left.
	BeforeS int `json:"before_s"`
	// MaxGenerations bounds the heads of the run; 0: no bound.
	MaxGenerations int `json:"max_generations,omitempty"`
	// HeadWaitS is how long workers keep their GPUs waiting for the next
	// generation's head.
	HeadWaitS int `json:"head_wait_s"`
}

// Before is how long before its end a head starts handing over.
func (r RolloverSpec) Before() time.Duration { return time.Duration(r.BeforeS) * time.Second }

// HeadWait is how long a worker waits for the next head.
func (r RolloverSpec) HeadWait() time.Duration { return time.Duration(r.HeadWaitS) * time.Second }

// RollsOver reports whether the cluster hands over from head to head.
func (s Spec) RollsOver() bool { return s.Rollover != nil }

// WorkerNode is the allocation of a worker job of the default type.
func (s Spec) WorkerNode() NodeSpec { return s.DefaultType().Node }

// legacyWorkerNode is the implicit type's allocation: the head's, on the
// worker partition when the spec names one.
func (s Spec) legacyWorkerNode() NodeSpec {
	n := s.Node
	if s.WorkerPartition != "" {
		n.Partition = s.WorkerPartition
	}
	return n
}

// AutoscaleSpec are the autoscaler's settings.
type AutoscaleSpec struct {
	Enabled    bool `json:"enabled"`
	MinWorkers int  `json:"min_workers"`
	MaxWorkers int  `json:"max_workers"`
	// MaxPending bounds worker jobs waiting in the queue; 0: MaxWorkers.
	MaxPending int `json:"max_pending,omitempty"`
	// The durations are stored in seconds (the keys of the landed spec.json);
	// read them through IdleTimeout, UpscaleDelay and PollInterval.
	IdleTimeoutS  int     `json:"idle_timeout_s"`
	UpscaleDelayS float64 `json:"upscale_delay_s"`
	// PollIntervalS is how often the head reads Ray's demand.
	PollIntervalS float64 `json:"poll_interval_s"`
	// CPUOnlyDemand lets demand that asks for no GPU start worker jobs.
	CPUOnlyDemand bool `json:"cpu_only_demand,omitempty"`
}

// IdleTimeout is how long a worker Ray sees idle stays before it is drained; 0: never.
func (a AutoscaleSpec) IdleTimeout() time.Duration {
	return time.Duration(a.IdleTimeoutS) * time.Second
}

// UpscaleDelay is how long demand must last before workers are submitted for it.
func (a AutoscaleSpec) UpscaleDelay() time.Duration { return secondsOf(a.UpscaleDelayS) }

// PollInterval is how often the head reads Ray's demand; 0 when unset.
func (a AutoscaleSpec) PollInterval() time.Duration { return secondsOf(a.PollIntervalS) }

// DrainBefore is how long before its time limit SLURM warns a job.
func (s Spec) DrainBefore() time.Duration { return time.Duration(s.DrainBeforeS) * time.Second }

func secondsOf(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// DrainNotice is what the head's autoscaler tells a worker's supervisor
// once Ray accepted draining its node: the raylet then exits by itself, and
// that exit is this outcome, not a failure. Written once, by the head.
type DrainNotice struct {
	SchemaVersion int       `json:"schema_version"`
	Job           string    `json:"job"`
	NodeID        string    `json:"node_id"`
	Outcome       Outcome   `json:"outcome"`
	Reason        string    `json:"reason"`
	Accepted      time.Time `json:"accepted"`
}

// HeadEnding is the head job's notice that it was told to stop.
type HeadEnding struct {
	SchemaVersion int       `json:"schema_version"`
	Job           string    `json:"job"`
	Reason        string    `json:"reason"`
	At            time.Time `json:"at"`
}

// AutoscalerStatus is the head's autoscaler as `status` shows it; written by
// the head job every poll.
type AutoscalerStatus struct {
	SchemaVersion int       `json:"schema_version"`
	Updated       time.Time `json:"updated"`
	Enabled       bool      `json:"enabled"`
	MinWorkers    int       `json:"min_workers"`
	MaxWorkers    int       `json:"max_workers"`
	// Demand is what Ray waits for, by shape ("GPU:1 CPU:1" → count), and
	// DemandGPUs its GPUs in all.
	Demand     map[string]int `json:"demand"`
	DemandGPUs float64        `json:"demand_gpus"`
	// DemandByType is how many of the bundles Ray waits for were routed
	// to each worker type (its name → count); absent without types.
	DemandByType map[string]int `json:"demand_by_type,omitempty"`
	// PendingWorkers are worker jobs submitted and not yet joined.
	PendingWorkers int                `json:"pending_workers"`
	Infeasible     []InfeasibleDemand `json:"infeasible"`
	LastDecision   *AutoscaleDecision `json:"last_decision"`
	BackoffUntil   *time.Time         `json:"backoff_until"`
	// Reason says why the last poll did what it did, or why not.
	Reason string `json:"reason"`
	// Error is why the last poll could not read Ray or SLURM ("" when it could).
	Error string `json:"error,omitempty"`
}

// InfeasibleDemand is demand no worker job can serve, and why.
type InfeasibleDemand struct {
	Shape string `json:"shape"`
	Why   string `json:"why"`
}

// AutoscaleDecision is the last poll that changed something.
type AutoscaleDecision struct {
	At        time.Time `json:"at"`
	Submitted []string  `json:"submitted,omitempty"`
	Cancelled []string  `json:"cancelled,omitempty"`
	Drained   []string  `json:"drained,omitempty"`
	Why       string    `json:"why"`
}

// NodeSpec is the SLURM allocation of one node job.
type NodeSpec struct {
	GPUs       int      `json:"gpus_per_node"`
	CPUs       int      `json:"cpus_per_node,omitempty"`
	Mem        string   `json:"mem,omitempty"`
	Partition  string   `json:"partition,omitempty"`
	Account    string   `json:"account,omitempty"`
	QOS        string   `json:"qos,omitempty"`
	Time       string   `json:"time,omitempty"`
	Constraint string   `json:"constraint,omitempty"`
	SbatchArgs []string `json:"sbatch_args,omitempty"`
	// Gres replaces the gpu:GPUs request ("gpu:h100:8"): a GRES type is
	// what guarantees the GPU model, which a Ray label alone cannot.
	Gres string `json:"gres,omitempty"`
}

// Submission records one sbatch call; each is its own file, written once by the
// process that submitted it, so concurrent `grow`s never share a file.
type Submission struct {
	SchemaVersion int    `json:"schema_version"`
	Role          Role   `json:"role"`
	JobID         string `json:"job_id"`
	// Tasks is the array size; 0 for a plain job.
	Tasks     int       `json:"tasks,omitempty"`
	Submitted time.Time `json:"submitted"`
	Script    string    `json:"script"`
	// Autoscaled marks the autoscaler's submissions: it cancels only its own
	// pending jobs, never a user's `grow`.
	Autoscaled bool `json:"autoscaled,omitempty"`
	// Type is a worker submission's type; "": the default type (and every
	// worker of a cluster without types).
	Type string `json:"type,omitempty"`
}

// JobKeys lists the per-node keys of a submission: "8", or "7_0".."7_K-1" for an array.
func (s Submission) JobKeys() []string {
	if s.Tasks == 0 {
		return []string{s.JobID}
	}
	keys := make([]string, s.Tasks)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s_%d", s.JobID, i)
	}
	return keys
}

// HeadJobID returns the head's job id from a cluster's submissions.
func HeadJobID(subs []Submission) (string, bool) {
	for _, s := range subs {
		if s.Role == RoleHead {
			return s.JobID, true
		}
	}
	return "", false
}

// Phase is how far a job's supervisor got; written only by that supervisor.
type Phase string

const (
	PhaseStarting Phase = "starting"
	PhaseRunning  Phase = "running"
	PhaseDraining Phase = "draining"
	PhaseEnded    Phase = "ended"
	PhaseFailed   Phase = "failed"
)

// NodeRecord is what a job's supervisor tells the login node about itself.
// squeue forgets ended jobs after MinJobAge, so the final outcome lives here too.
type NodeRecord struct {
	SchemaVersion int    `json:"schema_version"`
	Job           string `json:"job"`
	Role          Role   `json:"role"`
	Phase         Phase  `json:"phase"`
	// Outcome is how the job ended, once Phase is final; Reason says it in words.
	Outcome   Outcome `json:"outcome,omitempty"`
	Reason    string  `json:"reason,omitempty"`
	SlurmNode string  `json:"slurm_node,omitempty"`
	IP        string  `json:"ip,omitempty"`
	GPUs      int     `json:"gpus"`
	GPUIDs    string  `json:"gpu_ids,omitempty"`
	TempDir   string  `json:"temp_dir,omitempty"`
	// MemMB is the job's memory in MB as SLURM gives it
	// (SLURM_MEM_PER_NODE, or SLURM_MEM_PER_CPU times its CPUs), and
	// ObjectStoreMB the Ray object store its node runs with; 0: unknown. A
	// rollover head promotes a worker only when what its object store
	// leaves holds a head's GCS, dashboard and autoscaler.
	MemMB         int `json:"mem_mb,omitempty"`
	ObjectStoreMB int `json:"object_store_mb,omitempty"`
	// ExitCode is the driver command's exit status (driver jobs only).
	ExitCode *int      `json:"exit_code,omitempty"`
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`
	// GPUSamples is the node's GPU inventory, sampled every GPUSampleInterval
	// (a pace a shared filesystem tolerates); GPUsSampled is when.
	GPUSamples  []GPUSample `json:"gpu_samples,omitempty"`
	GPUsSampled *time.Time  `json:"gpus_sampled,omitempty"`
	// TimeLimitAt is set when SLURM warned that the job's time limit is near
	// (--signal=B:USR1@drain-before); it is when the limit falls, ±30 s.
	TimeLimitAt *time.Time `json:"time_limit_at,omitempty"`
	// PreemptedAt is when SLURM's preemption reached this run (its
	// SIGTERM); set as the node starts draining, so the head's autoscaler
	// expects the job back after SLURM's requeue rather than replace it.
	PreemptedAt *time.Time `json:"preempted_at,omitempty"`
	// MetricsExportPort is where this node's Ray exports its Prometheus
	// metrics (ray start --metrics-export-port), on IP; 0 until Ray runs.
	MetricsExportPort int `json:"metrics_export_port,omitempty"`
	// Successor is the driver job a rollover cluster's driver job handed
	// its run over to (outcome handed_over); "" otherwise.
	Successor string `json:"successor,omitempty"`
}

// Final reports whether the supervisor has exited.
func (r NodeRecord) Final() bool { return r.Phase == PhaseEnded || r.Phase == PhaseFailed }

// GPUSampleInterval is how often a supervisor records its GPUs' use.
const GPUSampleInterval = 30 * time.Second

// GPUSample is one GPU of a node as NVML last reported it; null means unknown.
type GPUSample struct {
	ID             string `json:"id"`
	Name           string `json:"name,omitempty"`
	MemoryUsedMiB  *int64 `json:"memory_used_mib"`
	MemoryTotalMiB *int64 `json:"memory_total_mib"`
	UtilizationPct *int   `json:"utilization_pct"`
	Processes      int    `json:"processes"`
}

// HeadInfo is published by the head job once Ray is healthy.
type HeadInfo struct {
	SchemaVersion int    `json:"schema_version"`
	Job           string `json:"job"`
	// Address is the GCS address workers and drivers join ("ip:port").
	Address string `json:"address"`
	NodeIP  string `json:"node_ip"`
	// Dashboard listens on the head's localhost only; reach it with a tunnel.
	Dashboard  string    `json:"dashboard"`
	SlurmNode  string    `json:"slurm_node"`
	RayVersion string    `json:"ray_version"`
	Published  time.Time `json:"published"`
	// Metrics is sraybatch's own Prometheus endpoint ("ip:port", /metrics,
	// the metrics-token as bearer token); empty when it could not listen.
	Metrics string `json:"metrics,omitempty"`
	// Generation is the head's generation (generation.go); 0 for a cluster
	// without generations (no --rollover), whose head.json is its only head.
	Generation int `json:"generation,omitempty"`
	// TokenFile is the base name of the generation's Ray token in the
	// cluster directory (TokenFileOf); "" means `token`.
	TokenFile string `json:"token_file,omitempty"`
}

// MembershipSnapshot is the Ray side of the cluster, kept by the head's
// supervisor so the login node needs no network path to compute nodes.
type MembershipSnapshot struct {
	SchemaVersion int `json:"schema_version"`
	// Updated is when Ray last answered; Heartbeat when the head's supervisor
	// last wrote, whether Ray answered or not (a frozen head stops both).
	Updated   time.Time              `json:"updated"`
	Heartbeat time.Time              `json:"heartbeat"`
	Nodes     map[string]*MemberNode `json:"nodes"`
}

// MemberNode is one job's Ray node as the head last saw it; entries stay after
// the node dies so `lost` can be told from `waiting`.
type MemberNode struct {
	NodeID string  `json:"node_id"`
	IP     string  `json:"ip"`
	GPUs   float64 `json:"gpus"`
	Alive  bool    `json:"alive"`
	// Registered is when the node registered with the GCS (Ray's start_time_ms).
	Registered time.Time `json:"registered"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
}

// DownRequest marks a cluster that `down` was asked to end, so the jobs it
// cancels are shown as ended rather than lost.
type DownRequest struct {
	SchemaVersion int       `json:"schema_version"`
	Requested     time.Time `json:"requested"`
}

// JobResourcePrefix starts the Ray custom resource that maps a Ray node back
// to its job: sraybatch_job_<job key>.
const JobResourcePrefix = "sraybatch_job_"

// JobResource is the Ray custom resource that maps a Ray node back to its job.
func JobResource(jobKey string) string { return JobResourcePrefix + jobKey }

// jobResource matches a job resource exactly. Ray derives more resources from
// it on a node that holds placement groups (sraybatch_job_7_0_group_<pg>,
// sraybatch_job_7_0_group_0_<pg>); those never name a job.
//
// It is compiled on first use, not at every command's start.
var jobResource = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^` + JobResourcePrefix + `([0-9]+(?:_[0-9]+)?)$`)
})

// JobOfResources returns the job key of the Ray node whose resources these
// are; ok is false when none names a job. Should several (never on a node
// sraybatch started), the smallest name wins, so the answer never depends on
// map order. The Python side (sraybatch_trainloop) parses the same way; both
// are tested against testdata/shared-state.json.
func JobOfResources(resources map[string]float64) (job string, ok bool) {
	best := ""
	for name := range resources {
		if m := jobResource().FindStringSubmatch(name); m != nil && (best == "" || name < best) {
			best, job = name, m[1]
		}
	}
	return job, best != ""
}
