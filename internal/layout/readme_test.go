package layout

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// layoutEntries are the bullets of the README's Layout section that start
// with a path, "- `internal/follow/` ...", by that path (without the slash).
func layoutEntries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	entries := map[string]string{}
	for _, bullet := range strings.Split(section, "\n- `")[1:] {
		path, text, _ := strings.Cut(bullet, "`")
		entries[strings.TrimSuffix(path, "/")] = text
	}
	return entries
}

// Every package of the module has its own entry in the README's Layout
// section: a bullet that starts with its path.
func TestReadmeNamesEveryPackage(t *testing.T) {
	t.Parallel()
	entries := layoutEntries(t)
	for _, pkg := range sortedKeys(moduleImports(t)) {
		if _, ok := entries[pkg]; !ok {
			t.Errorf("the README's Layout section has no entry for %s: add a bullet that starts with `%s/`, what it holds and → what it imports", pkg, pkg)
		}
	}
}

var backticked = regexp.MustCompile("`([^`]+)`")

// Each entry's arrow names what the package may import, as the allow-list
// does ("→ nothing" for none). The CLI's says "everything below": the
// allow-list is its whole account.
func TestReadmeArrowsFollowTheAllowList(t *testing.T) {
	t.Parallel()
	for path, text := range layoutEntries(t) {
		allow, isPkg := allowed[path]
		if !isPkg || path == "cmd/sraybatch" {
			continue
		}
		i := strings.LastIndex(text, "→")
		if i < 0 {
			t.Errorf("README: the entry for %s has no → naming what it imports", path)
			continue
		}
		var named []string
		for _, m := range backticked.FindAllStringSubmatch(text[i:], -1) {
			if p := strings.TrimSuffix(m[1], "/"); allowed[p] != nil {
				named = append(named, p)
			}
		}
		slices.Sort(named)
		want := slices.Sorted(slices.Values(allow))
		if !slices.Equal(named, want) {
			t.Errorf("README: %s → %v, but the layout allows it %v", path, named, want)
		}
	}
}
