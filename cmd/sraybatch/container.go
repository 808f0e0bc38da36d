package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/container"
	"github.com/sraybatch/sraybatch/internal/oneline"
	"github.com/sraybatch/sraybatch/raynode"
)

// containerOptions are up's --container flags: the image every Ray process
// of the cluster runs in, recorded in the spec so grow, the autoscaler and
// train start the same.
type containerOptions struct {
	Image   string
	Runtime string
	Mounts  []string
	Env     []string
}

func (c *containerOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Image, "container", "", "run every Ray process (nodes, drivers) inside this image: a directory or .sqfs (Charliecloud), a .sif (Apptainer), …; --setup still runs on the host, before it")
	fs.StringVar(&c.Runtime, "container-runtime", "", "charliecloud, apptainer, enroot, pyxis or podman-hpc (default: from the image's form, else the first found on PATH)")
	fs.StringArrayVar(&c.Mounts, "container-mount", nil, "SRC:DST: also bind host SRC at DST inside the image (repeatable; DST must exist in a read-only image)")
	fs.StringArrayVar(&c.Env, "container-env", nil, "NAME: also pass this variable of the node's environment (after --setup) into the image (repeatable; by default only Ray's, the GPUs' and USER go in)")
}

// containerHost is what checking an image asks of the login node; tests
// fake it.
type containerHost struct {
	environ  []string
	lookPath func(string) (string, error)
	// run runs argv with env and returns its output (stdout and stderr).
	run func(ctx context.Context, argv, env []string) ([]byte, error)
	// readFile reads a /proc/sys setting; writable says whether this user
	// can create files in a directory.
	readFile func(string) ([]byte, error)
	writable func(string) bool
}

func systemContainerHost() containerHost {
	return containerHost{
		environ: os.Environ(), lookPath: exec.LookPath, readFile: os.ReadFile,
		run: func(ctx context.Context, argv, env []string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Env = env
			return cmd.CombinedOutput()
		},
		writable: func(dir string) bool { return syscall.Access(dir, 2 /* W_OK */) == nil },
	}
}

// containerCheck is one image being checked for a new cluster.
type containerCheck struct {
	opts       containerOptions
	h          containerHost
	clusterDir string
	ray        string
	insecure   bool
}

// resolve checks the image on the login node, before anything is
// submitted, and returns its spec; nil without --container. Every refusal
// is one line that says what to do.
func (c containerCheck) resolve(ctx context.Context, errOut io.Writer) (*cluster.ContainerSpec, error) {
	o := c.opts
	if o.Image == "" {
		if o.Runtime != "" || len(o.Mounts) > 0 || len(o.Env) > 0 {
			return nil, usagef("--container-runtime, --container-mount and --container-env need --container IMAGE")
		}
		return nil, nil
	}
	image, isDir, err := findImage(o.Image)
	if err != nil {
		return nil, err
	}
	mounts, err := parseMounts(o.Mounts)
	if err != nil {
		return nil, err
	}
	for _, name := range o.Env {
		if err := container.ValidEnvName(name); err != nil {
			return nil, usageError{err}
		}
	}
	rt, err := pickRuntime(o.Runtime, image, isDir, c.h.lookPath)
	if err != nil {
		return nil, err
	}
	if err := c.hostAllows(rt, image); err != nil {
		return nil, err
	}
	binds := append(container.SamePath([]string{c.clusterDir}, rt.SharesTmp()), mounts...)
	if err := c.mountPoints(ctx, rt, image, isDir, binds); err != nil {
		return nil, err
	}
	spec := &cluster.ContainerSpec{Image: image, Runtime: string(rt), Env: o.Env}
	for _, m := range mounts {
		spec.Mounts = append(spec.Mounts, m.String())
	}
	if rt == container.Pyxis {
		fmt.Fprintf(errOut, "image %s (pyxis): its Ray is checked on the first node (srun cannot run it here)\n", image)
		return spec, nil
	}
	v, err := c.probe(ctx, rt, image, binds, errOut)
	if err != nil {
		return nil, err
	}
	spec.RayVersion, spec.PythonVersion = v.Ray, v.Python
	return spec, nil
}

// findImage makes the image's path absolute (jobs run elsewhere) and says
// whether it is a directory.
func findImage(image string) (abs string, isDir bool, err error) {
	if abs, err = filepath.Abs(image); err != nil {
		return "", false, usagef("--container %s: %v", image, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", false, usagef("--container %s: no such image (a directory or .sqfs for Charliecloud, a .sif for Apptainer): build one, e.g. with scripts/container-image", image)
	}
	return abs, st.IsDir(), nil
}

func parseMounts(specs []string) ([]container.Bind, error) {
	var out []container.Bind
	for _, s := range specs {
		b, err := container.ParseBind(s)
		if err != nil {
			return nil, usageError{err}
		}
		if _, err := os.Stat(b.Src); err != nil {
			return nil, usagef("--container-mount %s: %s does not exist here: create it, on a filesystem the nodes share", s, b.Src)
		}
		out = append(out, b)
	}
	return out, nil
}

// pickRuntime resolves the runtime: the flag, else the image's form, else
// the first runtime found on PATH (pyxis only when asked: srun is on
// every SLURM login node). It must be on PATH here too: the image is
// checked with it.
func pickRuntime(flag, image string, isDir bool, lookPath func(string) (string, error)) (container.Runtime, error) {
	rt := container.FromImage(image, isDir)
	if flag != "" {
		var err error
		if rt, err = container.ParseRuntime(flag); err != nil {
			return "", usageError{err}
		}
	}
	if rt == "" {
		for _, r := range container.Runtimes {
			if _, err := lookPath(r.Executable()); err == nil && r != container.Pyxis {
				return r, nil
			}
		}
		return "", usagef("--container %s: no container runtime on PATH (ch-run, apptainer, enroot, podman-hpc): install one or load its module, or give --container-runtime", image)
	}
	if _, err := lookPath(rt.Executable()); err != nil {
		return "", usagef("--container-runtime %s: %s is not on PATH here: install it or load its module (the nodes need it too)", rt, rt.Executable())
	}
	return rt, nil
}

// hostAllows refuses a node where the runtime cannot start: unprivileged
// user namespaces switched off, or (ch-run with a SquashFS image) a mount
// directory this user cannot write.
func (c containerCheck) hostAllows(rt container.Runtime, image string) error {
	if rt != container.Apptainer && rt != container.Pyxis {
		for _, f := range []string{"/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone"} {
			if b, err := c.h.readFile(f); err == nil && strings.TrimSpace(string(b)) == "0" {
				return usagef("--container: this node does not allow unprivileged user namespaces (%s is 0), which %s needs: ask the site, or use a runtime it supports", f, rt)
			}
		}
	}
	if rt != container.Charliecloud || !container.IsSquashFS(image) {
		return nil
	}
	mnt := "/var/tmp/" + envOf(c.h.environ, "USER") + ".ch/mnt" // ch-run's default
	dir := mnt
	for dir != "/" {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		dir = filepath.Dir(dir)
	}
	if !c.h.writable(dir) {
		return usagef("--container %s: ch-run mounts a SquashFS image at %s, and %s is not writable for you: ask the site, or unpack the image into a directory (unsquashfs -d DIR %s)", image, mnt, dir, image)
	}
	return nil
}

// mountPoints refuses an image that lacks a bind target the runtime cannot
// create: ch-run cannot mkdir in a read-only image, and a SquashFS image is
// always read-only, so it is listed rather than tried.
func (c containerCheck) mountPoints(ctx context.Context, rt container.Runtime, image string, isDir bool, binds []container.Bind) error {
	need := rt.MountPoints(binds)
	if len(need) == 0 {
		return nil
	}
	has := func(p string) bool { st, err := os.Stat(filepath.Join(image, p)); return err == nil && st.IsDir() }
	if !isDir {
		out, err := c.h.run(ctx, []string{"unsquashfs", "-l", "-no-progress", image}, c.h.environ)
		if err != nil {
			return usagef("--container %s: cannot list the SquashFS image (unsquashfs -l: %v): %s", image, err, oneline.Of(string(out)))
		}
		dirs := container.SquashFSDirs(string(out))
		has = func(p string) bool { return dirs[p] }
	}
	if missing := container.Missing(need, has); len(missing) > 0 {
		how := "mkdir them in the image"
		if !isDir {
			how = "add them to the image and rebuild the SquashFS"
		}
		return usagef("--container %s lacks the mount points %s, which %s binds and cannot create in a read-only image: %s", image, strings.Join(missing, " "), rt, how)
	}
	return nil
}

// probe runs the image's python with the runtime, as the nodes will, and
// reads its Ray and Python versions: an image without ray, or with a Ray
// too old for token auth, is refused here rather than on the nodes.
func (c containerCheck) probe(ctx context.Context, rt container.Runtime, image string, binds []container.Bind, errOut io.Writer) (container.Versions, error) {
	tmp, err := os.MkdirTemp("/tmp", "srb-probe-")
	if err != nil {
		return container.Versions{}, fmt.Errorf("check the image: %w", err)
	}
	defer os.RemoveAll(tmp)
	var present []container.Bind // the cluster directory is not made yet
	for _, b := range append(container.SamePath([]string{tmp}, rt.SharesTmp()), binds...) {
		if _, err := os.Stat(b.Src); err == nil {
			present = append(present, b)
		}
	}
	ray := orDefaultString(c.ray, "ray")
	python := container.PythonFor(ray)
	run := container.Run{Runtime: rt, Image: image, Binds: present, Host: c.h.environ, Dir: tmp,
		Env: container.Inside(c.h.environ, c.opts.Env, "HOME="+tmp, "PATH="+container.PathFor(ray))}
	cmd := run.Command([]string{python, "-c", container.ProbeScript})
	exe, _ := c.h.lookPath(cmd.Argv[0])
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := c.h.run(ctx, append([]string{exe}, cmd.Argv[1:]...), cmd.Env)
	v, perr := container.ParseProbe(string(out))
	if perr != nil {
		return v, usagef("--container %s: no working ray inside (%s ran %s -c 'import ray': %v: %s): install ray in the image (the cluster's pinned version), or give --ray with its path inside", image, rt, python, err, oneline.Of(perr.Error()))
	}
	if rv, err := raynode.ParseRayVersion(v.Ray); err != nil || (!c.insecure && !rv.AtLeast(raynode.MinAuthVersion)) {
		return v, usagef("--container %s has ray %s, without token auth (needs >= %s): install a newer ray in the image, or `up --insecure`", image, v.Ray, raynode.MinAuthVersion)
	}
	fmt.Fprintf(errOut, "image %s (%s): ray %s, Python %s (checked in %s)\n", image, rt, v.Ray, v.Python, time.Since(start).Round(10*time.Millisecond))
	return v, nil
}

func envOf(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func orDefaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
