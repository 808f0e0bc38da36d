package raygcs

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFieldNumbersAreRays compares every constant of this package that
// numbers something of Ray's protobuf (its trailing comment names it, see
// fields.go) with the number testdata/gen_fixtures.py read from Ray's own
// descriptors into testdata/fields.json. A constant the generator has not
// checked, or that Ray numbers differently, fails here.
func TestFieldNumbersAreRays(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "fields.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ray map[string]int
	if err := json.Unmarshal(b, &ray); err != nil {
		t.Fatalf("testdata/fields.json: %v", err)
	}
	checked := map[string]bool{}
	for name, spec := range numberedConsts(t) {
		v, _ := strconv.Atoi(spec.Values[0].(*ast.BasicLit).Value)
		for _, full := range strings.Split(strings.TrimSpace(spec.Comment.Text()), ", ") {
			checked[full] = true
			want, ok := ray[full]
			switch {
			case !ok:
				t.Errorf("%s names %s, which testdata/fields.json lacks: rerun testdata/gen_fixtures.py", name, full)
			case v != want:
				t.Errorf("%s = %d, but Ray numbers %s %d", name, v, full, want)
			}
		}
	}
	for full := range ray {
		if !checked[full] {
			t.Errorf("testdata/fields.json names %s, which no constant does: rerun testdata/gen_fixtures.py", full)
		}
	}
	if len(checked) < 40 { // a broken parse must not pass as "nothing to check"
		t.Errorf("found %d numbered names, want every field wire.go reads", len(checked))
	}
}

// numberedConsts returns the constants of this package's non-test files
// whose trailing comment names Ray protobuf fields or enum values, by name.
func numberedConsts(t *testing.T) map[string]*ast.ValueSpec {
	t.Helper()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]*ast.ValueSpec{}
	fset := token.NewFileSet()
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				spec := s.(*ast.ValueSpec)
				if spec.Comment == nil || !strings.HasPrefix(spec.Comment.Text(), "ray.") {
					continue
				}
				if len(spec.Names) != 1 || len(spec.Values) != 1 {
					t.Fatalf("%s: a numbered constant is one name = one number", fset.Position(spec.Pos()))
				}
				if lit, ok := spec.Values[0].(*ast.BasicLit); !ok || lit.Kind != token.INT {
					t.Fatalf("%s: %s is not a plain number: the generator cannot read it", fset.Position(spec.Pos()), spec.Names[0].Name)
				}
				specs[spec.Names[0].Name] = spec
			}
		}
	}
	return specs
}
