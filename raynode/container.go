package raynode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/container"
	"github.com/sraybatch/sraybatch/internal/oneline"
)

// image is the cluster's container image as this node runs it: every Ray
// process of the node (`ray start`, the driver's Python) runs inside it,
// through the runtime found on the PATH --setup left (module loads are a
// host thing, so --setup runs on the host, before the container). The
// supervisor itself stays on the host and owns the runtime's processes.
type image struct {
	spec    cluster.ContainerSpec
	runtime container.Runtime
	// exe is the runtime's executable on the host.
	exe   string
	binds []container.Bind
	// ray is the ray executable inside; its directory leads PATH there.
	ray string
}

// newImage resolves the spec's runtime on the host; a missing runtime fails
// the node at once, in words that say what to do.
func newImage(spec cluster.ContainerSpec, dir cluster.Dir, ray, hostPath string) (*image, error) {
	rt, err := container.ParseRuntime(spec.Runtime)
	if err != nil {
		return nil, err
	}
	exe, err := lookPath(rt.Executable(), hostPath)
	if err != nil {
		return nil, fmt.Errorf("container runtime %s: %s is not on this node's PATH after --setup: install it, or load its module in --setup", rt, rt.Executable())
	}
	binds := container.SamePath([]string{dir.Path}, rt.SharesTmp())
	for _, m := range spec.Mounts {
		b, err := container.ParseBind(m)
		if err != nil {
			return nil, err
		}
		binds = append(binds, b)
	}
	return &image{spec: spec, runtime: rt, exe: exe, binds: binds, ray: ray}, nil
}

// command is prog with args inside the image, with what of env Ray needs,
// HOME in the node's private dir (Ray writes under HOME, and the image is
// read-only), and the image's PATH. private is bound at its own path, so
// Ray's socket paths and log copies mean the same on both sides.
func (im *image) command(prog string, args, env []string, private string, gpus bool, set ...string) *exec.Cmd {
	binds := append(container.SamePath([]string{private}, im.runtime.SharesTmp()), im.binds...)
	set = append([]string{"HOME=" + homeDir(private), "PATH=" + container.PathFor(im.ray)}, set...)
	inside := container.Inside(env, im.spec.Env, set...)
	run := container.Run{Runtime: im.runtime, Image: im.spec.Image, Binds: binds, Env: inside, Host: env, GPUs: gpus, Dir: workDir(binds, private)}
	c := run.Command(append([]string{prog}, args...))
	cmd := exec.Command(im.exe, c.Argv[1:]...)
	cmd.Env = c.Env
	return cmd
}

// homeDir is HOME inside the image: in the node's private dir, which
// makeTempDir creates.
func homeDir(private string) string { return filepath.Join(private, "home") }

// workDir is the working directory inside: the job's own when a bind makes
// it the same path inside, else the node's private dir.
func workDir(binds []container.Bind, private string) string {
	wd, err := os.Getwd()
	if err != nil {
		return private
	}
	for _, b := range binds {
		if b.Src == b.Dst && (wd == b.Dst || strings.HasPrefix(wd, b.Dst+"/")) {
			return wd
		}
	}
	return private
}

// probe runs the version probe inside the image and checks what it finds
// against what `up` recorded: an image changed since then would start
// nodes that Ray refuses, or that differ from the rest of the cluster.
func (im *image) probe(ctx context.Context, env []string, private string) (container.Versions, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := im.command(container.PythonFor(im.ray), []string{"-c", container.ProbeScript}, env, private, false)
	probe := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	probe.Env = cmd.Env
	out, err := probe.CombinedOutput()
	found, perr := container.ParseProbe(string(out))
	if perr != nil {
		return found, fmt.Errorf("ray in image %s (%s): %v: %s", im.spec.Image, im.runtime, err, oneline.Of(perr.Error()))
	}
	recorded := container.Versions{Ray: im.spec.RayVersion, Python: im.spec.PythonVersion}
	if recorded.Ray != "" {
		if why := container.Mismatch(im.spec.Image, found, recorded); why != "" {
			return found, fmt.Errorf("%s", why)
		}
	}
	return found, nil
}

// command is prog with args as this node runs it: inside the cluster's
// image when it has one (set: variables only the image gets), else on the
// host with env.
func (s *supervisor) command(prog string, args, env []string, private string, gpus bool, set ...string) *exec.Cmd {
	if s.image == nil {
		cmd := exec.Command(prog, args...)
		cmd.Env = env
		return cmd
	}
	return s.image.command(prog, args, env, private, gpus, set...)
}

// start starts cmd; a runtime that stays the parent of what runs inside
// is stopped after it (parentLast).
func (s *supervisor) start(cmd *exec.Cmd) (Process, error) {
	p, err := s.procs.Start(cmd)
	if err != nil || s.image == nil || !s.image.runtime.KeepsParent(s.image.spec.Image) {
		return p, err
	}
	if c, ok := p.(interface{ Pid() int }); ok {
		return parentLast{Process: p, pid: c.Pid()}, nil
	}
	return p, nil
}

// prepareImage resolves the cluster's image on this node and checks, inside
// it, that its Ray and Python are the ones the cluster started with.
func (s *supervisor) prepareImage(ctx context.Context, env []string) error {
	ray := orDefault(s.spec.Ray, "ray")
	im, err := newImage(*s.spec.Container, s.cfg.Dir, ray, envValue(env, "PATH"))
	if err != nil {
		return err
	}
	s.image = im
	tmp, err := s.makeTempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp.private)
	start := s.clock.Now()
	found, err := im.probe(ctx, env, tmp.private)
	if err != nil {
		return err
	}
	s.logf("image %s (%s): ray %s, Python %s (checked in %s)", im.spec.Image, im.runtime, found.Ray, found.Python, s.clock.Now().Sub(start).Round(10*time.Millisecond))
	if s.cfg.Role == cluster.RoleHead && !s.spec.Insecure {
		return s.acceptRayVersion(found.Ray)
	}
	return nil
}
