package cluster

import (
	"path/filepath"
	"strings"
	"testing"
)

// Seeds live in testdata/fuzz/FuzzValidateName/: good names, the longest one,
// and names that would escape a directory, a job name or a shell word.

// FuzzValidateName checks ValidateName against an independent statement of
// the rule, ^[a-z0-9][a-z0-9-]{0,39}$, and that every accepted name is safe
// unquoted: as one path element, a shell word and a command argument.
func FuzzValidateName(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		if want := nameRule(name); (err == nil) != want {
			t.Fatalf("ValidateName(%q) = %v, the rule says valid = %v", name, err, want)
		}
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "invalid cluster name ") {
				t.Errorf("error for %q is not one line starting 'invalid cluster name': %q", name, msg)
			}
			return
		}
		if filepath.Base(name) != name || filepath.Clean(name) != name || name == "." || name == ".." || filepath.IsAbs(name) {
			t.Errorf("accepted %q is not a single path element", name)
		}
		if strings.HasPrefix(name, "-") {
			t.Errorf("accepted %q would read as an option", name)
		}
		if i := strings.IndexAny(name, " \t\n\r\x00'\"`$\\;&|<>(){}[]*?!~#=%/:,."); i >= 0 {
			t.Errorf("accepted %q has %q, special to a shell, a path or SLURM", name, name[i])
		}
	})
}

// nameRule is ^[a-z0-9][a-z0-9-]{0,39}$ without regexp.
func nameRule(name string) bool {
	if len(name) < 1 || len(name) > 40 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}
