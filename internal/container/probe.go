package container

import (
	"fmt"
	"path"
	"strings"
)

// ProbeScript prints the image's Ray and Python versions on one line; it is
// run with the image's python (PythonFor), through the runtime, at `up` and
// on every node before Ray starts.
const ProbeScript = `import sys, ray; print("sraybatch-probe", ray.__version__, "%d.%d.%d" % sys.version_info[:3])`

// Versions are what the probe found inside an image.
type Versions struct{ Ray, Python string }

// PythonFor is the image's python that runs Ray: the one beside an
// absolute --ray (a venv's bin), else python3 on the PATH inside.
func PythonFor(ray string) string {
	if strings.Contains(ray, "/") {
		return path.Join(path.Dir(ray), "python3")
	}
	return "python3"
}

// ParseProbe reads the probe's output; err says what the image lacks, in
// the words of its last output line when the probe found no ray.
func ParseProbe(out string) (Versions, error) {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "sraybatch-probe" {
			return Versions{Ray: f[1], Python: f[2]}, nil
		}
	}
	return Versions{}, fmt.Errorf("%s", lastLine(out))
}

// Mismatch says how found differs from the versions the cluster started
// with, or "" when they agree. Ray refuses a node or driver whose Python
// differs even in the patch level.
func Mismatch(image string, found, cluster Versions) string {
	if found == cluster {
		return ""
	}
	return fmt.Sprintf("image %s has ray %s and Python %s, but the cluster runs ray %s and Python %s (Ray refuses a Python that differs even in the patch level): use the image the cluster started with",
		image, found.Ray, found.Python, cluster.Ray, cluster.Python)
}

// Missing lists the paths of need that have lacks.
func Missing(need []string, has func(string) bool) []string {
	var out []string
	for _, p := range need {
		if !has(p) {
			out = append(out, p)
		}
	}
	return out
}

// SquashFSDirs reads `unsquashfs -l IMAGE` and returns the set of the
// image's paths ("/dev", "/home", …).
func SquashFSDirs(listing string) map[string]bool {
	set := map[string]bool{}
	for _, line := range strings.Split(listing, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "squashfs-root"); ok && p != "" {
			set[p] = true
		}
	}
	return set
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
