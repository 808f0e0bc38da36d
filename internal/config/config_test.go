package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

var testSchema = map[string]Kind{
	"name": String, "head.gpus": Int, "head.partition": String, "head.sbatch_args": List,
	"insecure": Bool, "autoscale.idle_timeout": Duration, "autoscale.min_workers": Int, "ratio": Float,
}

func TestParseValuesAndLines(t *testing.T) {
	t.Parallel()
	l, err := Parse([]byte(`name: long
head:
  gpus: 2
  partition: gpu
  sbatch_args: [--exclusive, --mail-type=END]
insecure: true
autoscale: {idle_timeout: 2m}
ratio: 3
`), "long.yaml", OriginFile, testSchema)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]struct {
		texts string
		line  int
	}{
		"name": {"long", 1}, "head.gpus": {"2", 3}, "head.partition": {"gpu", 4},
		"head.sbatch_args": {"--exclusive|--mail-type=END", 5}, "insecure": {"true", 6},
		"autoscale.idle_timeout": {"2m", 7}, "ratio": {"3", 8},
	} {
		v, ok := l.Values[path]
		if !ok || strings.Join(v.Texts, "|") != want.texts || v.Source.Line != want.line || v.Source.Path != "long.yaml" {
			t.Errorf("%s = %+v, want %q at line %d", path, v, want.texts, want.line)
		}
	}
	if _, ok := l.Values["autoscale.min_workers"]; ok {
		t.Error("a key the file does not give has a value")
	}
}

// Every refusal is one line: the file, the line and what was expected.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "name: a\npartiton: gpu\n", `f.yaml:2: unknown key "partiton": use one of autoscale, head, insecure, name, ratio, workers`},
		{"unknown key in section", "head:\n  gpu: 1\n", `f.yaml:2: unknown key "gpu" in head: use one of gpus, partition, sbatch_args`},
		{"wrong type", "head:\n  gpus: four\n", `f.yaml:2: head.gpus: expected an integer, got "four"`},
		{"float for int", "head: {gpus: 1.5}\n", `f.yaml:1: head.gpus: expected an integer, got "1.5"`},
		{"bad duration", "autoscale:\n  idle_timeout: 2 minutes\n", `f.yaml:2: autoscale.idle_timeout: expected a duration such as 90s, 2m or 1h30m, got "2 minutes"`},
		{"duration without unit", "autoscale: {idle_timeout: 90}\n", `f.yaml:1: autoscale.idle_timeout: expected a duration such as 90s, 2m or 1h30m, got "90"`},
		{"bool as string", "insecure: yes\n", `f.yaml:1: insecure: expected true or false, got "yes"`},
		{"mapping for string", "name: {a: 1}\n", `f.yaml:1: name: expected a string, got a mapping`},
		{"null", "name:\n", `f.yaml:1: name: expected a string, got nothing`},
		{"section not mapping", "head: gpu\n", `f.yaml:1: head: expected a mapping of its settings (gpus, partition, sbatch_args)`},
		{"twice", "name: a\nname: b\n", `f.yaml:2: name is given twice`},
		{"not a mapping", "- a\n", `f.yaml:1: expected a mapping of settings (key: value)`},
		{"not yaml", "name: [a\n", `f.yaml: not valid YAML: line 1: did not find expected ',' or ']'`},
		{"list of mappings", "head: {sbatch_args: [{a: 1}]}\n", `f.yaml:1: head.sbatch_args: expected a list of strings, got a mapping`},
		{"workers not mapping", "workers: [cpu]\n", `f.yaml:1: workers: expected a mapping of worker types`},
		{"bad type name", "workers:\n  CPU: {gpus: 0}\n", `f.yaml:2: invalid worker type name "CPU"`},
		{"type key", "workers:\n  cpu: {gpu: 0}\n", `f.yaml:2: unknown key "gpu" in worker type cpu: use one of partition, gpus,`},
		{"type gpus", "workers:\n  cpu:\n    gpus: -1\n", `f.yaml:3: workers.cpu.gpus: expected a non-negative integer, got -1`},
		{"type idle", "workers:\n  cpu: {idle_timeout: soon}\n", `f.yaml:2: workers.cpu.idle_timeout: expected a duration`},
		{"type resource", "workers:\n  cpu: {resources: {GPU: 1}}\n", `f.yaml:2: workers.cpu.resources: GPU is Ray's own resource`},
		{"type resource amount", "workers:\n  cpu: {resources: {ssd: 0}}\n", `f.yaml:2: workers.cpu.resources.ssd: expected a positive number, got "0"`},
		{"type job resource", "workers:\n  cpu: {resources: {sraybatch_job_1: 1}}\n", `invalid resource name "sraybatch_job_1"`},
		{"type label", "workers:\n  cpu: {labels: {ray.io/node-group: x}}\n", `invalid label "ray.io/node-group"`},
		{"type label value", "workers:\n  cpu: {labels: {disk: \"a,b=c\"}}\n", `f.yaml:2: workers.cpu.labels.disk: expected a label value`},
		{"type twice", "workers:\n  cpu: {}\n  cpu: {}\n", `f.yaml:3: worker type cpu is given twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "f.yaml", OriginFile, testSchema)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a config.Error", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q\nwant   %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// The worker types keep the file's order (the first is the default), which
// a Go map would not.
func TestTypesKeepTheFileOrder(t *testing.T) {
	t.Parallel()
	l, err := Parse([]byte("workers:\n  zeta: {}\n  alpha: {}\n  mid: {}\n"), "f.yaml", OriginFile, testSchema)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range l.Types {
		names = append(names, d.Name)
	}
	if strings.Join(names, ",") != "zeta,alpha,mid" || l.Types[1].Line != 3 {
		t.Errorf("types = %v (alpha at line %d)", names, l.Types[1].Line)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	head := cluster.NodeSpec{GPUs: 1, CPUs: 4, Mem: "8G", Partition: "gpu", Account: "proj", QOS: "normal",
		Time: "24:00:00", Constraint: "a100", SbatchArgs: []string{"--exclusive"}}
	zero, four, cost := 0, 4, 2.5
	cpuPart, none, gres := "cpu", "", "gpu:h100:8"
	idle := 2 * 60e9
	cases := []struct {
		name   string
		def    TypeDef
		wp     string
		want   cluster.NodeSpec
		errSub string
	}{
		{"inherits the head", TypeDef{Name: "a"}, "",
			cluster.NodeSpec{GPUs: 1, CPUs: 4, Mem: "8G", Partition: "gpu", Account: "proj", QOS: "normal", Constraint: "a100", SbatchArgs: []string{"--exclusive"}}, ""},
		{"worker partition first", TypeDef{Name: "a"}, "scav",
			cluster.NodeSpec{GPUs: 1, CPUs: 4, Mem: "8G", Partition: "scav", Account: "proj", QOS: "normal", Constraint: "a100", SbatchArgs: []string{"--exclusive"}}, ""},
		{"own values win", TypeDef{Name: "cpu", Partition: &cpuPart, GPUs: &zero, CPUs: &four, Constraint: &none, SbatchArgs: []string{}}, "scav",
			cluster.NodeSpec{GPUs: 0, CPUs: 4, Mem: "8G", Partition: "cpu", Account: "proj", QOS: "normal", SbatchArgs: []string{}}, ""},
		{"gres gives the count", TypeDef{Name: "h100", Gres: &gres}, "",
			cluster.NodeSpec{GPUs: 8, CPUs: 4, Mem: "8G", Partition: "gpu", Account: "proj", QOS: "normal", Constraint: "a100", SbatchArgs: []string{"--exclusive"}, Gres: "gpu:h100:8"}, ""},
		{"gres and gpus differ", TypeDef{Name: "h100", Gres: &gres, GPUs: &four}, "", cluster.NodeSpec{}, "gpus 4 differs from the 8 of gres gpu:h100:8"},
		{"gres not gpu", TypeDef{Name: "x", Gres: &cpuPart}, "", cluster.NodeSpec{}, `gres "cpu": expected gpu[:TYPE]:COUNT`},
		{"min over max", TypeDef{Name: "x", Min: 3, Max: 2}, "", cluster.NodeSpec{}, "min 3 is more than max 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.def.Cost = &cost
			d := time.Duration(idle)
			tc.def.IdleTimeout = &d
			got, err := Resolve([]TypeDef{tc.def}, head, tc.wp)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("err = %v, want %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := got[0]
			if !equalNode(g.Node, tc.want) || g.IdleTimeoutS != 120 || *g.Cost != 2.5 || g.Name != tc.def.Name {
				t.Errorf("got %+v\nwant node %+v", g, tc.want)
			}
		})
	}
}

func equalNode(a, b cluster.NodeSpec) bool {
	return a.GPUs == b.GPUs && a.CPUs == b.CPUs && a.Mem == b.Mem && a.Partition == b.Partition && a.Account == b.Account &&
		a.QOS == b.QOS && a.Time == b.Time && a.Constraint == b.Constraint && a.Gres == b.Gres &&
		strings.Join(a.SbatchArgs, "|") == strings.Join(b.SbatchArgs, "|") && (a.SbatchArgs == nil) == (b.SbatchArgs == nil)
}

// Layers: the cluster file, then the user's, then the site's; a missing
// default file is no layer, a missing cluster file an error.
func TestLayers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(p, s string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write(filepath.Join(dir, "c.yaml"), "name: fromfile\n")
	write(filepath.Join(dir, "xdg", "sraybatch", "config.yaml"), "name: fromuser\nhead: {partition: user}\n")
	site := write(filepath.Join(dir, "site.yaml"), "head: {partition: site, gpus: 3}\nworkers: {cpu: {}}\n")
	env := map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg"), "HOME": dir, SiteEnv: site}
	layers, err := Layers(file, func(k string) string { return env[k] }, testSchema)
	if err != nil || len(layers) != 3 {
		t.Fatalf("layers = %d, %v", len(layers), err)
	}
	for path, want := range map[string]string{"name": "fromfile", "head.partition": "user", "head.gpus": "3"} {
		if v, _ := Lookup(layers, path); v.Texts[0] != want {
			t.Errorf("%s = %v, want %s", path, v, want)
		}
	}
	if types := Types(layers); len(types) != 1 || types[0].Source.Origin != OriginSite {
		t.Errorf("types = %+v, want the site's", types)
	}
	env[SiteEnv] = filepath.Join(dir, "absent.yaml")
	if layers, err := Layers("", func(k string) string { return env[k] }, testSchema); err != nil || len(layers) != 1 {
		t.Errorf("without file and site: %d layers, %v", len(layers), err)
	}
	if _, err := Layers(filepath.Join(dir, "nope.yaml"), func(k string) string { return env[k] }, testSchema); err == nil {
		t.Error("a missing cluster file is accepted")
	}
	if got := UserPath(func(k string) string { return map[string]string{"HOME": "/h", "XDG_CONFIG_HOME": "rel"}[k] }); got != "/h/.config/sraybatch/config.yaml" {
		t.Errorf("UserPath with a relative XDG_CONFIG_HOME = %s", got)
	}
}
