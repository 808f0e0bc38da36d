package container

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Run is one process to run inside an image.
type Run struct {
	Runtime Runtime
	Image   string
	Binds   []Bind
	// Env is the whole environment inside, KEY=VALUE: HOME (a writable
	// directory: Ray writes under it) and PATH (the image's) included.
	// Nothing else of the host's reaches the process.
	Env []string
	// Host is the environment of the runtime's own process; only what the
	// runtime itself needs of it is kept (hostKeys).
	Host []string
	// GPUs turns on the runtime's GPU switch.
	GPUs bool
	// Dir is the working directory inside; "" leaves the runtime's.
	Dir string
}

// Command is what to execute on the host: Argv[0] is the runtime's
// executable (the caller finds it on PATH), Env its process's environment.
type Command struct {
	Argv []string
	Env  []string
}

// Command runs cmd inside the image. The result is deterministic: the
// environment sorted by key, binds in the order given.
func (r Run) Command(cmd []string) Command {
	env := sortedEnv(r.Env)
	switch r.Runtime {
	case Apptainer:
		return r.apptainer(env, cmd)
	case Enroot:
		return r.enroot(env, cmd)
	case Pyxis:
		return r.pyxis(env, cmd)
	case PodmanHPC:
		return r.podman(env, cmd)
	default:
		return r.charliecloud(env, cmd)
	}
}

// charliecloud: ch-run shares the host network, binds the host's /dev
// (so /dev/shm is the host's: Ray's object store gets its full size) and
// /tmp, and has no GPU switch: GPU libraries come into a directory image
// with `ch-fromhost --nvidia` beforehand (not proven here). --env-no-expand
// keeps a '$' in a value as it is.
func (r Run) charliecloud(env, cmd []string) Command {
	argv := []string{r.Runtime.Executable(), "--unset-env=*", "--env-no-expand"}
	argv = append(append(append(argv, each("--set-env", env)...), r.bindArgs("--bind")...), r.dirArg("--cd")...)
	argv = append(argv, r.Image, "--")
	// ch-run binds $TMPDIR, not /tmp, at /tmp when it is set: without it
	// the node's temp dir under /tmp has the same path inside.
	return Command{Argv: append(argv, cmd...), Env: keepKeys(r.Host, hostKeys)}
}

// apptainer: --contain gives a private /tmp and HOME, so the temp dir and
// HOME are bound explicitly, as is /dev/shm (the minimal /dev's is small).
// The environment goes in as APPTAINERENV_*, since --env splits its value
// at commas; --no-eval keeps Apptainer's shell from expanding it.
func (r Run) apptainer(env, cmd []string) Command {
	argv := []string{r.Runtime.Executable(), "exec", "--contain", "--cleanenv", "--no-eval", "--bind=/dev/shm:/dev/shm"}
	if r.GPUs {
		argv = append(argv, "--nv")
	}
	host := keepKeys(r.Host, hostKeys)
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == "HOME" {
			argv = append(argv, "--home="+v)
			continue
		}
		host = append(host, "APPTAINERENV_"+kv)
	}
	argv = append(append(append(argv, r.bindArgs("--bind")...), r.dirArg("--pwd")...), r.Image)
	return Command{Argv: append(argv, cmd...), Env: host}
}

// enroot: /tmp inside is a private tmpfs and /dev/shm the host's; each bind
// is an fstab entry that creates its target (x-create), and the GPUs come
// through enroot's nvidia hook, which NVIDIA_VISIBLE_DEVICES turns on.
func (r Run) enroot(env, cmd []string) Command {
	argv := []string{r.Runtime.Executable(), "start"}
	for _, b := range r.Binds {
		argv = append(argv, "--mount="+b.Src+" "+b.Dst+" none x-create=dir,rbind")
	}
	if r.GPUs {
		env = sortedEnv(append(env, "NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"))
	}
	argv = append(append(argv, each("--env", env)...), "--", r.Image)
	return Command{Argv: append(argv, cmd...), Env: keepKeys(r.Host, hostKeys)}
}

// pyxis runs the command as a step of the job, in the job's GPUs (pyxis
// turns on enroot's hook itself). srun exports its own environment into
// the step, so that environment is the one inside, plus the SLURM_*
// variables srun needs to find the job.
func (r Run) pyxis(env, cmd []string) Command {
	argv := []string{r.Runtime.Executable(), "--ntasks=1", "--nodes=1", "--overlap", "--export=ALL",
		"--container-image=" + r.Image, "--no-container-mount-home"}
	if len(r.Binds) > 0 {
		mounts := make([]string, len(r.Binds))
		for i, b := range r.Binds {
			mounts[i] = b.String()
		}
		argv = append(argv, "--container-mounts="+strings.Join(mounts, ","))
	}
	if r.Dir != "" {
		argv = append(argv, "--container-workdir="+r.Dir)
	}
	return Command{Argv: append(argv, cmd...), Env: append(env, keepPrefixes(r.Host, "SLURM_")...)}
}

// podman: --ipc=host shares the host's /dev/shm (podman's own is 64 MB, too
// small for Ray's object store); --gpu is podman-hpc's GPU switch.
func (r Run) podman(env, cmd []string) Command {
	argv := []string{r.Runtime.Executable(), "run", "--rm", "--net=host", "--ipc=host"}
	if r.GPUs {
		argv = append(argv, "--gpu")
	}
	argv = append(append(append(argv, each("--env", env)...), r.bindArgs("--volume")...), r.dirArg("--workdir")...)
	argv = append(argv, r.Image)
	return Command{Argv: append(argv, cmd...), Env: keepKeys(r.Host, hostKeys)}
}

// each is flag=v for every v.
func each(flag string, values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = flag + "=" + v
	}
	return out
}

// bindArgs is flag=SRC:DST for every bind.
func (r Run) bindArgs(flag string) []string {
	binds := make([]string, len(r.Binds))
	for i, b := range r.Binds {
		binds[i] = b.String()
	}
	return each(flag, binds)
}

// dirArg is flag=DIR for a working directory, nothing without one.
func (r Run) dirArg(flag string) []string {
	if r.Dir == "" {
		return nil
	}
	return []string{flag + "=" + r.Dir}
}

// hostKeys are what a runtime's own process needs of the host's
// environment: its helpers on PATH (squashfuse, fusermount), USER (ch-run
// refuses to start without it), HOME and XDG_RUNTIME_DIR for its own
// configuration and state. TMPDIR is left out on purpose (see charliecloud).
var hostKeys = []string{"HOME", "LOGNAME", "PATH", "USER", "XDG_RUNTIME_DIR"}

func keepKeys(env, keys []string) []string {
	var out []string
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); slices.Contains(keys, k) {
			out = append(out, kv)
		}
	}
	return out
}

func keepPrefixes(env []string, prefixes ...string) []string {
	var out []string
	for _, kv := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				out = append(out, kv)
				break
			}
		}
	}
	return out
}

// sortedEnv sorts by key and keeps each key's last value, as exec would.
func sortedEnv(env []string) []string {
	last := map[string]string{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		last[k] = kv
	}
	out := make([]string, 0, len(last))
	for _, k := range slices.Sorted(maps.Keys(last)) {
		out = append(out, last[k])
	}
	return out
}

// passedPrefixes and passedKeys are what of a node's environment goes in:
// Ray's settings and token path, the job's GPUs, sraybatch's own variables,
// the metrics ports Ray's head reads, and USER (ch-run refuses to start
// without it). Everything else --setup or a module left (LD_LIBRARY_PATH,
// PYTHONPATH, the host's PATH and HOME) stays out: it names host paths.
var (
	passedPrefixes = []string{"RAY_", "CUDA_", "NVIDIA_", "SRAYBATCH_"}
	passedKeys     = []string{"AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT", "LOGNAME", "TZ", "USER"}
)

// Inside is the environment a process inside gets: what of env it needs
// (passedPrefixes, passedKeys) and the variables the user asked for by name
// (extra: `up --container-env`), then set over it (HOME, PATH, …).
func Inside(env, extra []string, set ...string) []string {
	out := keepPrefixes(env, passedPrefixes...)
	out = append(out, keepKeys(env, append(extra, passedKeys...))...)
	return sortedEnv(append(out, set...))
}

// ValidEnvName accepts a --container-env name: a shell variable's name,
// not one sraybatch sets inside itself.
func ValidEnvName(name string) error {
	if name == "HOME" || name == "PATH" {
		return fmt.Errorf("--container-env %s: sraybatch sets %s inside the image itself (HOME: a private writable directory; PATH: the image's, led by --ray's directory)", name, name)
	}
	for i, c := range name {
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (i == 0 || c < '0' || c > '9') {
			return fmt.Errorf("--container-env %q: give a variable's name (letters, digits, '_'), e.g. --container-env HF_HOME", name)
		}
	}
	if name == "" {
		return fmt.Errorf("--container-env: give a variable's name, e.g. --container-env HF_HOME")
	}
	return nil
}

// DefaultPath is the PATH inside: Debian's, after the directory of an
// absolute --ray (a venv's bin), so `python` there is the venv's.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// PathFor is the PATH inside for a ray executable given as ray.
func PathFor(ray string) string {
	if i := strings.LastIndexByte(ray, '/'); i > 0 {
		return ray[:i] + ":" + DefaultPath
	}
	return DefaultPath
}
