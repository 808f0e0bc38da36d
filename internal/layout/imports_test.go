// Package layout holds no code: its test keeps the module's import graph the
// one the README's Layout section describes, so a package never depends on
// a backend it does not use.
package layout

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sraybatch/sraybatch/"

// forbidden lists, per package, the packages it must not depend on, even
// indirectly. The model and the supervisor talk to the scheduler seam only;
// each backend stands alone; the seam and the small helpers depend on nothing.
var forbidden = map[string][]string{
	"internal/scheduler": {"internal/", "slurm", "raynode", "templates", "trainloop"},
	"internal/cluster":   {"slurm", "internal/local", "internal/backend", "raynode", "internal/gpu", "internal/proctree"},
	"internal/local":     {"slurm", "raynode", "internal/backend", "templates"},
	"slurm":              {"internal/local", "internal/cluster", "raynode", "internal/backend", "templates"},
	"raynode":            {"slurm", "internal/local", "internal/backend", "templates", "internal/autoscale", "internal/submit"},
	"internal/autoscale": {"raynode", "internal/local", "internal/backend"},
	"internal/submit":    {"raynode", "internal/local", "internal/backend", "internal/autoscale"},
	"internal/raygcs":    {"internal/", "slurm", "raynode", "templates", "trainloop"},
	"internal/clock":     {"internal/", "slurm", "raynode"},
	"templates":          {"slurm", "internal/local", "raynode", "internal/backend"},
	"trainloop":          {"slurm", "internal/local", "raynode", "internal/backend"},
	"internal/gpu":       {"internal/", "slurm", "raynode"},
	"internal/proctree":  {"internal/", "slurm", "raynode"},
	"internal/oneline":   {"internal/", "slurm", "raynode"},
	"internal/metrics":   {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit"},
	"internal/observe":   {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit"},
	"internal/timeline":  {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit"},
	"internal/report":    {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit"},
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	for pkg, bans := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v: %s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ours := strings.CutPrefix(dep, module)
			if !ours || rel == pkg {
				continue
			}
			for _, ban := range bans {
				if rel == ban || strings.HasPrefix(rel, strings.TrimSuffix(ban, "/")+"/") {
					t.Errorf("%s depends on %s (via go list -deps); the layout forbids %s", pkg, rel, ban)
				}
			}
		}
	}
}
