// Package container builds the command lines that run a process inside a
// container image with one of the HPC container runtimes, as an ordinary
// user: Charliecloud's ch-run, Apptainer, enroot (directly, or through
// SLURM's pyxis plugin) and podman-hpc. Every one shares the host network
// (Ray needs it), starts from an empty environment plus what the caller
// names, and binds the caller's directories at the same path inside as
// outside, so Ray's socket paths and sraybatch's files mean the same on both
// sides. It is pure: what it builds is golden-tested, and only Charliecloud
// is proven on this project's machines.
package container

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Runtime is a container runtime, by the name `up --container-runtime` takes.
type Runtime string

const (
	Charliecloud Runtime = "charliecloud"
	Apptainer    Runtime = "apptainer"
	Enroot       Runtime = "enroot"
	// Pyxis is enroot through SLURM's plugin: `srun --container-image`.
	Pyxis     Runtime = "pyxis"
	PodmanHPC Runtime = "podman-hpc"
)

// Runtimes lists every runtime, in the order the login node looks for one
// when neither the flag nor the image's form names it.
var Runtimes = []Runtime{Charliecloud, Apptainer, Enroot, PodmanHPC, Pyxis}

// ParseRuntime accepts a runtime's name.
func ParseRuntime(s string) (Runtime, error) {
	for _, r := range Runtimes {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, len(Runtimes))
	for i, r := range Runtimes {
		names[i] = string(r)
	}
	return "", fmt.Errorf("unknown container runtime %q: use one of %s", s, strings.Join(names, ", "))
}

// Executable is the runtime's program, looked up on the host's PATH.
func (r Runtime) Executable() string {
	switch r {
	case Charliecloud:
		return "ch-run"
	case Pyxis:
		return "srun"
	default:
		return string(r)
	}
}

// Proven reports whether the runtime ran a cluster on this project's
// machines; the others' command lines are golden-tested only.
func (r Runtime) Proven() bool { return r == Charliecloud }

// FromImage is the runtime an image's form implies: a directory or a
// SquashFS file for Charliecloud, a SIF for Apptainer; "" when the form
// names none.
func FromImage(image string, isDir bool) Runtime {
	switch {
	case isDir, IsSquashFS(image):
		return Charliecloud
	case strings.HasSuffix(image, ".sif"):
		return Apptainer
	}
	return ""
}

// IsSquashFS reports whether an image path names a SquashFS file.
func IsSquashFS(image string) bool {
	return strings.HasSuffix(image, ".sqfs") || strings.HasSuffix(image, ".squashfs")
}

// KeepsParent reports whether the runtime's own process stays the parent of
// the command for its whole life (ch-run serving a SquashFS image through
// FUSE, Apptainer's starter): that parent must be stopped last, after the
// processes inside, or they lose their root. Otherwise the runtime execs
// the command in place.
func (r Runtime) KeepsParent(image string) bool {
	return (r == Charliecloud && IsSquashFS(image)) || r == Apptainer
}

// SharesTmp reports whether the runtime binds the host's /tmp at /tmp
// (ch-run does, unless told otherwise): a directory under it needs no bind.
func (r Runtime) SharesTmp() bool { return r == Charliecloud }

// Bind makes host directory Src visible at Dst inside the image.
type Bind struct{ Src, Dst string }

func (b Bind) String() string { return b.Src + ":" + b.Dst }

// ParseBind reads a --container-mount SRC:DST; both must be absolute, and
// neither may hold ',' or ':' (the runtimes' list separators).
func ParseBind(s string) (Bind, error) {
	src, dst, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(dst, ":") {
		return Bind{}, fmt.Errorf("--container-mount %q: give SRC:DST, two absolute paths", s)
	}
	b := Bind{Src: filepath.Clean(src), Dst: filepath.Clean(dst)}
	if !filepath.IsAbs(src) || !filepath.IsAbs(dst) || b.Dst == "/" {
		return Bind{}, fmt.Errorf("--container-mount %q: SRC and DST must be absolute paths, DST not /", s)
	}
	if strings.ContainsAny(s, ",\n\x00") {
		return Bind{}, fmt.Errorf("--container-mount %q: paths must not hold ',' or a newline", s)
	}
	return b, nil
}

// SamePath binds the directories that must have one path inside and out
// (the cluster directory): each by its top-level directory, which an image
// can carry as an empty mount point (/home, /scratch), so a read-only image
// need not contain the user's deep path. A path under a top-level
// directory the image itself needs (/usr, /var, …) is bound as it is.
// A path under /tmp is skipped when tmpShared (ch-run binds the host's
// /tmp), else bound as it is.
func SamePath(paths []string, tmpShared bool) []Bind {
	var out []Bind
	for _, p := range paths {
		p = filepath.Clean(p)
		top := "/" + strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]
		if top == "/tmp" && tmpShared {
			continue
		}
		b := Bind{Src: top, Dst: top}
		// A runtime's private /tmp stays: only the node's own dir is bound.
		if slices.Contains(systemDirs, top) || top == "/" || top == "/tmp" {
			b = Bind{Src: p, Dst: p}
		}
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

// systemDirs are the top-level directories an image brings itself: binding
// the host's over them would replace the image's system.
var systemDirs = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var"}

// MountPoints are the directories an image must contain for the runtime to
// start it with binds (their targets): ch-run binds /dev, /proc, /sys and
// the host's /tmp, and cannot create a missing target in a read-only image.
// The other runtimes create their own mount points.
func (r Runtime) MountPoints(binds []Bind) []string {
	if r != Charliecloud {
		return nil
	}
	out := []string{"/dev", "/proc", "/sys", "/tmp"}
	for _, b := range binds {
		if !slices.Contains(out, b.Dst) {
			out = append(out, b.Dst)
		}
	}
	return out
}
