// Package layout holds no code: its tests keep the module's import graph the
// one the README's Layout section describes, so a package never depends on
// a backend it does not use, and a new edge is a decision written down.
package layout

import (
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/sraybatch/sraybatch/"

// allowed names, for every package of the module, the module packages it
// imports (its non-test files, as go list's Imports). The rule is exact: an
// import not named here fails, and so does a name not imported, so the list
// stays the graph as it is. A new package must be added (with its entry in
// the README's Layout section): one line here, sorted by path. Test files may
// import the test-support packages (clocktest, slurmtest, goldentest,
// sharedstate, testci) as they need.
var allowed = map[string][]string{
	"cmd/sraybatch": {
		"internal/autoscale", "internal/backend", "internal/clock", "internal/cluster", "internal/config", "internal/container", "internal/events",
		"internal/follow", "internal/gpu", "internal/local", "internal/metrics", "internal/observe", "internal/oneline",
		"internal/report", "internal/scheduler", "internal/submit", "internal/timeline",
		"raynode", "slurm", "templates", "trainloop",
	},
	"internal/autoscale": {
		"internal/clock", "internal/cluster", "internal/events", "internal/observe", "internal/oneline",
		"internal/raygcs", "internal/scheduler", "internal/submit", "slurm",
	},
	"internal/backend":         {"internal/cluster", "internal/local", "internal/scheduler", "slurm"},
	"internal/clock":           {},
	"internal/container":       {},
	"internal/clock/clocktest": {},
	"internal/cluster":         {"internal/scheduler"},
	"internal/config":          {"internal/cluster"},
	"internal/events":          {"internal/cluster"},
	"internal/follow":          {},
	"internal/goldentest":      {},
	"internal/gpu":             {},
	"internal/layout":          {},
	"internal/local":           {"internal/cluster", "internal/gpu", "internal/proctree", "internal/scheduler"},
	"internal/metrics":         {"internal/cluster", "internal/events", "internal/scheduler"},
	"internal/observe":         {"internal/cluster", "internal/scheduler", "trainloop"},
	"internal/oneline":         {},
	"internal/proctree":        {},
	"internal/raygcs":          {},
	"internal/report":          {"internal/cluster", "internal/events", "internal/scheduler", "internal/timeline"},
	"internal/scheduler":       {},
	"internal/submit":          {"internal/cluster", "internal/scheduler", "slurm", "templates"},
	"internal/sharedstate":     {},
	"internal/testci":          {},
	"internal/timeline":        {"internal/cluster", "internal/events"},
	"raynode": {
		"internal/clock", "internal/cluster", "internal/container", "internal/events", "internal/gpu", "internal/metrics",
		"internal/observe", "internal/oneline", "internal/proctree", "internal/raygcs", "internal/scheduler",
	},
	"slurm":           {"internal/oneline", "internal/scheduler"},
	"slurm/slurmtest": {"slurm"},
	"templates":       {"internal/cluster"},
	"trainloop":       {"internal/cluster", "internal/events"},
}

// never are what a package must not reach even through others: checked on
// the allow-list's own closure, so no added edge can bring them in by a
// detour. The model and the supervisor talk to the scheduler seam only; each
// backend stands alone.
var never = map[string][]string{
	"internal/cluster":   {"slurm", "internal/local", "internal/backend", "raynode", "internal/gpu", "internal/proctree"},
	"internal/local":     {"slurm", "raynode", "internal/backend", "templates"},
	"slurm":              {"internal/local", "internal/cluster", "raynode", "internal/backend", "templates"},
	"raynode":            {"slurm", "internal/local", "internal/backend", "templates", "internal/autoscale", "internal/submit"},
	"internal/autoscale": {"raynode", "internal/local", "internal/backend"},
	"internal/submit":    {"raynode", "internal/local", "internal/backend", "internal/autoscale"},
	"templates":          {"slurm", "internal/local", "raynode", "internal/backend"},
	"trainloop":          {"slurm", "internal/local", "raynode", "internal/backend"},
	"internal/metrics":   {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit"},
	"internal/observe":   {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit"},
	"internal/timeline":  {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit"},
	"internal/events":    {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit", "trainloop", "internal/timeline"},
	"internal/report":    {"slurm", "internal/local", "internal/backend", "raynode", "internal/autoscale", "internal/submit"},
}

// moduleImports is every package of the module (relative to it) with the
// module packages its non-test files import, as go list sees them now.
func moduleImports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, out)
	}
	pkgs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		pkgs[pkg] = []string{}
		for _, imp := range fields[1:] {
			if rel, ours := strings.CutPrefix(imp, module); ours {
				pkgs[pkg] = append(pkgs[pkg], rel)
			}
		}
	}
	return pkgs
}

func TestImportsAllowed(t *testing.T) {
	t.Parallel()
	pkgs := moduleImports(t)
	for _, pkg := range sortedKeys(pkgs) {
		allow, listed := allowed[pkg]
		if !listed {
			t.Errorf("package %s is not in the layout's allow-list: add it to allowed with what it imports (%s), and to the README's Layout section",
				pkg, strings.Join(pkgs[pkg], ", "))
			continue
		}
		for _, imp := range pkgs[pkg] {
			if !slices.Contains(allow, imp) {
				t.Errorf("%s imports %s, which the layout does not allow it: remove the import, or allow it here and in the README's Layout section", pkg, imp)
			}
		}
		for _, a := range allow {
			if !slices.Contains(pkgs[pkg], a) {
				t.Errorf("the layout allows %s to import %s, which it does not: drop it from allowed (and the README)", pkg, a)
			}
		}
	}
	for _, pkg := range sortedKeys(allowed) {
		if _, ok := pkgs[pkg]; !ok {
			t.Errorf("the layout's allow-list names %s, which is no package of the module: drop it", pkg)
		}
	}
}

func TestNeverEvenIndirectly(t *testing.T) {
	t.Parallel()
	for _, pkg := range sortedKeys(never) {
		reach := closure(pkg)
		for _, ban := range never[pkg] {
			if reach[ban] {
				t.Errorf("the allow-list lets %s reach %s through others; the layout forbids it", pkg, ban)
			}
		}
	}
}

// closure is every package pkg may reach through the allow-list.
func closure(pkg string) map[string]bool {
	seen := map[string]bool{}
	var visit func(string)
	visit = func(p string) {
		for _, next := range allowed[p] {
			if !seen[next] {
				seen[next] = true
				visit(next)
			}
		}
	}
	visit(pkg)
	return seen
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
