//go:build e2e

package main

import (
	"cmp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EBadClusterFile: as the test user on the real SLURM, a cluster file
// (or a site file) that is wrong gets one line naming the file, the line
// and what was expected, exit 2, and nothing is created or submitted: no
// cluster directory, no job of the cluster's name in SLURM.
func TestE2EBadClusterFile(t *testing.T) {
	e2eShare(t, 0)
	e := needE2E(t)
	files := e.userDir(t, "badcfg")
	good := writeFile(t, files, "good.yaml", "name: e2ebadcfg\nhead: {gpus: 1}\n")
	site := writeFile(t, files, "site.yaml", "account: lab\nhead:\n  time: 90 minutes\n")
	for _, c := range []struct {
		name, file, site, want string
	}{
		{"an unknown key", writeFile(t, files, "unknown.yaml", "name: e2ebadcfg\nhead: {gpus: 1}\nworkrs:\n  cpu: {gpus: 0}\n"), "", `unknown.yaml:3: unknown key "workrs": use one of`},
		{"a bad duration in a type", writeFile(t, files, "duration.yaml", "name: e2ebadcfg\nworkers:\n  cpu:\n    gpus: 0\n    idle_timeout: 2 minutes\n"), "", "duration.yaml:5: workers.cpu.idle_timeout: expected a duration"},
		{"a wrong type", writeFile(t, files, "kind.yaml", "name: e2ebadcfg\nhead: {gpus: one}\n"), "", "kind.yaml:2: head.gpus: expected an integer"},
		{"a bad site file", good, site, `site.yaml:3: head.time: invalid --time "90 minutes"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := e
			e.env = append(append([]string(nil), e.env...), "SRAYBATCH_SITE_CONFIG="+cmp.Or(c.site, filepath.Join(files, "none.yaml")))
			e.user.give(t, files)
			r := e.sray(t, "up", "-f", c.file)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Errorf("up -f: exit %d, stderr %q; want exit 2 and one line with %q", r.code, r.stderr, c.want)
			}
			if _, err := os.Stat(filepath.Join(e.home, "clusters", "e2ebadcfg")); !os.IsNotExist(err) {
				t.Errorf("a cluster directory was created (stat: %v)", err)
			}
			out, err := exec.Command("squeue", "-h", "--states=all", "-n", "sray-e2ebadcfg-head,sray-e2ebadcfg-worker", "-o", "%i").Output()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("squeue for the cluster's jobs: %q, %v; want none submitted", out, err)
			}
		})
	}
}
