package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/config"
	"github.com/sraybatch/sraybatch/internal/goldentest"
)

// Every flag of up has exactly one key in upKeys, and every key a flag: a
// flag added to up without its key fails here.
func TestEveryUpFlagHasAKey(t *testing.T) {
	t.Parallel()
	var o upOptions
	var s uStreams
	fs := upFlags(&o, s.io(false))
	byFlag, byPath := map[string]bool{}, map[string]bool{}
	for _, k := range upKeys {
		if byFlag[k.Flag] || byPath[k.Path] {
			t.Errorf("flag --%s or key %s is in upKeys twice", k.Flag, k.Path)
		}
		byFlag[k.Flag], byPath[k.Path] = true, true
		if fs.Lookup(k.Flag) == nil {
			t.Errorf("key %s names --%s, which up does not have", k.Path, k.Flag)
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if !byFlag[f.Name] && !slices.Contains(upFlagsWithoutKey, f.Name) {
			t.Errorf("up's --%s has no key in upKeys: add one", f.Name)
		}
	})
	if _, err := upSchema(fs); err != nil {
		t.Error(err)
	}
}

// cfgFiles writes a cluster file, user defaults and site defaults under a
// temporary directory and returns the environment that finds the defaults.
func cfgFiles(t *testing.T, file, user, site string) (dir string, getenv func(string) string) {
	t.Helper()
	dir = t.TempDir()
	env := map[string]string{"HOME": dir, "XDG_CONFIG_HOME": filepath.Join(dir, "xdg"), config.SiteEnv: filepath.Join(dir, "site.yaml")}
	for p, s := range map[string]string{
		filepath.Join(dir, "c.yaml"): file, filepath.Join(dir, "xdg", "sraybatch", "config.yaml"): user, env[config.SiteEnv]: site,
	} {
		if s == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, func(k string) string { return env[k] }
}

// Precedence: flags > file > user > site > default, key by key.
func TestUpPrecedence(t *testing.T) {
	t.Parallel()
	site := "account: site-acct\nhead: {partition: site-part, mem: 1G, gpus: 2}\nsetup: module load site\nautoscale: {max_workers: 9}\n"
	user := "account: user-acct\nhead: {partition: user-part}\nautoscale: {idle_timeout: 3m}\n"
	file := "name: long\nhead: {partition: file-part}\nautoscale: {idle_timeout: 4m}\n"
	cases := []struct {
		name             string
		file, user, site string
		args             []string
		want             map[string]string // flag -> value|source
	}{
		{"site only", "", "", site, []string{"--name", "x"}, map[string]string{
			"account": "site-acct|site", "partition": "site-part|site", "mem": "1G|site", "gpus-per-node": "2|site",
			"max-workers": "9|site", "idle-timeout": "10m0s|default", "name": "x|flag",
		}},
		{"user over site", "", user, site, []string{"--name", "x"}, map[string]string{
			"account": "user-acct|user", "partition": "user-part|user", "mem": "1G|site", "idle-timeout": "3m0s|user",
		}},
		{"file over user", file, user, site, []string{"-f", "FILE"}, map[string]string{
			"name": "long|file", "partition": "file-part|file", "account": "user-acct|user", "idle-timeout": "4m0s|file",
			"setup": "module load site|site",
		}},
		{"flags over file", file, user, site, []string{"-f", "FILE", "--partition", "flag-part", "--idle-timeout", "1m"}, map[string]string{
			"partition": "flag-part|flag", "idle-timeout": "1m0s|flag", "name": "long|file",
		}},
		{"nothing", "", "", "", []string{"--name", "x"}, map[string]string{"partition": "|default", "gpus-per-node": "1|default"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, getenv := cfgFiles(t, tc.file, tc.user, tc.site)
			args := slices.Clone(tc.args)
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], "FILE", filepath.Join(dir, "c.yaml"))
			}
			var s uStreams
			o, err := parseUp(s.io(false), append(args, "--backend", "slurm"), getenv)
			if err != nil {
				t.Fatal(err)
			}
			for flag, want := range tc.want {
				i := slices.IndexFunc(o.settings, func(s setting) bool { return s.Flag == flag })
				got := o.settings[i].Value + "|" + strings.Fields(o.settings[i].Source)[0]
				if got != want {
					t.Errorf("--%s = %s, want %s", flag, got, want)
				}
			}
		})
	}
}

// A bad file is one line naming the file, the line and what was expected,
// and nothing is created or submitted (the fixture's SLURM has no stubs).
func TestUpBadFile(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, file, user, want string }{
		{"unknown key", "name: a\nhead: {partiton: gpu}\n", "", `c.yaml:2: unknown key "partiton" in head: use one of constraint, cpus, gpus, mem, partition, sbatch_args, time`},
		{"wrong type", "name: a\nhead:\n  gpus: one\n", "", `c.yaml:3: head.gpus: expected an integer, got "one"`},
		{"bad duration", "name: a\nautoscale: {enabled: true, idle_timeout: 5 min}\n", "", `c.yaml:2: autoscale.idle_timeout: expected a duration such as 90s, 2m or 1h30m, got "5 min"`},
		{"bad user defaults", "name: a\n", "qos: [a, b]\n", `config.yaml:1: qos: expected a string, got a list`},
		{"bad type", "name: a\nworkers:\n  cpu: {gpus: 0, partitions: cpu}\n", "", `c.yaml:3: unknown key "partitions" in worker type cpu`},
		{"bad gres", "name: a\nworkers:\n  h: {gres: \"gpu:h100:x\"}\n", "", `c.yaml:3: worker type h: gres "gpu:h100:x"`},
		{"bad partition", "name: a\nworkers:\n  cpu: {partition: \"a b\"}\n", "", `c.yaml:3: worker type cpu: invalid --partition "a b"`},
		{"bad time", "name: a\nhead:\n  time: 90 minutes\n", "", `c.yaml:3: head.time: invalid --time "90 minutes"`},
		{"bad time in user defaults", "name: a\n", "head: {gpus: 1}\nrollover: {enabled: true, before: -5m}\n", `config.yaml:2: rollover.before: --rollover-before and --head-wait must be positive`},
		{"bad value from two files", "name: a\nautoscale: {enabled: true, min_workers: 5}\n", "autoscale: {max_workers: 2}\n", `c.yaml:2: autoscale.min_workers, `},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, getenv := cfgFiles(t, tc.file, tc.user, "")
			f := newUFixture(t)
			var s uStreams
			o, err := parseUp(s.io(false), []string{"-f", filepath.Join(dir, "c.yaml"), "--backend", "slurm"}, getenv)
			if err == nil {
				err = runUp(context.Background(), s.io(false), f.app, o)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v\nwant one line with %q", err, tc.want)
			}
			var es uStreams
			if code := exitCode(es.io(false), "up", err); code != exitUsage {
				t.Errorf("exit code %d, want %d (bad input)", code, exitUsage)
			}
			if got := storeEntries(t, f.app.store); len(got) != 0 {
				t.Errorf("a bad file created %v", got)
			}
		})
	}
}

// exampleFile is the cluster file, scaled to the dev nodes.
const exampleFile = `# long.yaml
name: long
head: {gpus: 1, partition: gpu, time: "24:00:00"}
setup: source /scratch/me/venv/bin/activate
workers:
  gpu: {partition: gpu, gpus: 4, cpus: 32, max: 8}
  h100: {partition: gpu, gres: "gpu:h100:8", max: 2, resources: {"h100": 8}, labels: {tier: fast}}
  cpu: {partition: cpu, gpus: 0, cpus: 64, mem: 256G, max: 16, idle_timeout: 2m, setup: source /scratch/me/cpu-venv/bin/activate}
autoscale: {enabled: true}
`

// The dry run shows every setting and its source, the worker types, and
// each type's script; it creates nothing.
func TestUpDryRunFromFileGolden(t *testing.T) {
	t.Parallel()
	dir, getenv := cfgFiles(t, exampleFile, "autoscale: {idle_timeout: 5m}\n", "account: proj-42\nqos: normal\n")
	f := newUFixture(t)
	var s uStreams
	o, err := parseUp(s.io(false), []string{"-f", filepath.Join(dir, "c.yaml"), "--dry-run", "--max-workers", "20", "--backend", "slurm"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := runUp(context.Background(), s.io(false), f.app, o); err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(s.out.String(), f.app.store.Root, "/STORE")
	out = strings.ReplaceAll(out, dir, "/CFG")
	out = regexp.MustCompile(`\(id [0-9a-f-]{36}\)`).ReplaceAllString(out, "(id ID)")
	goldentest.Check(t, filepath.Join("testdata", "up-dry-run-file.golden"), []byte(out))
	if got := storeEntries(t, f.app.store); len(got) != 0 {
		t.Errorf("dry run created %v", got)
	}
}

// mentionsFlag finds a flag by its whole name only.
func TestMentionsFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		msg, flag string
		want      bool
	}{
		{`invalid --time "9x"`, "time", true},
		{"--timeout must be positive", "time", false},
		{"--timeout and --time", "time", true},
		{"--min-workers 5 is above --max-workers 2", "max-workers", true},
		{"--max-workers2", "max-workers", false},
		{"give --time", "time", true},
		{"no flag here", "time", false},
	} {
		if got := mentionsFlag(tc.msg, tc.flag); got != tc.want {
			t.Errorf("mentionsFlag(%q, %q) = %v, want %v", tc.msg, tc.flag, got, tc.want)
		}
	}
}
