// Package config reads sraybatch's YAML settings: a cluster file (`up -f`),
// the user's defaults and the site's, each strictly, with the line of every
// value, so `up --dry-run` can say where a setting came from and a bad file
// gets one line naming the file, the line and what was expected.
//
// It uses go.yaml.in/yaml/v3, the YAML organisation's maintained
// continuation of gopkg.in/yaml.v3 (archived): the same decoder, and its
// yaml.Node keeps each key's line and the order of a mapping's keys, which
// the worker types need (the first type is the default; a Go map would lose
// the order). Decoding walks the nodes against a schema rather than into
// structs, so an unknown key, a wrong type or a bad duration is refused
// with its line before anything is submitted.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Kind is what a setting's value must be.
type Kind int

const (
	String Kind = iota
	Int
	Bool
	Float
	Duration
	// List is a sequence of strings (a single string is a list of one).
	List
)

// expected is how an error names a kind.
func (k Kind) expected() string {
	return [...]string{
		String: "a string", Int: "an integer", Bool: "true or false", Float: "a number",
		Duration: "a duration such as 90s, 2m or 1h30m", List: "a list of strings",
	}[k]
}

// Key is one setting of the files: the `up` flag it stands for and its
// dotted path in the YAML ("head.partition": key partition under head).
type Key struct {
	Flag string
	Path string
}

// Origin is which file a layer is.
type Origin string

const (
	OriginFile Origin = "file" // up -f
	OriginUser Origin = "user" // $XDG_CONFIG_HOME/sraybatch/config.yaml
	OriginSite Origin = "site" // /etc/sraybatch/config.yaml
)

// Source is where a value came from: a file's line.
type Source struct {
	Origin Origin
	Path   string
	Line   int
}

func (s Source) String() string { return fmt.Sprintf("%s %s:%d", s.Origin, s.Path, s.Line) }

// Value is a setting as a file gave it: its text (several for a List),
// already checked against the setting's Kind.
type Value struct {
	Texts  []string
	Source Source
}

// Layer is one file's settings by path, and its worker types if it has any.
type Layer struct {
	Origin Origin
	Path   string
	Values map[string]Value
	// Types are the file's `workers:` in the file's order; nil: none.
	Types []TypeDef
}

// TypesKey is the mapping of worker types, a key of no flag.
const TypesKey = "workers"

// Error is a file that cannot be used: Error() is one line, "FILE:LINE: what".
type Error struct {
	Path string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
}

// Read decodes the file at path strictly against schema (a setting's path
// to its kind). A missing user or site file is no layer (nil, nil); a
// missing cluster file is an error.
func Read(path string, origin Origin, schema map[string]Kind) (*Layer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && origin != OriginFile {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s defaults: %w", origin, err)
	}
	return Parse(b, path, origin, schema)
}

// Parse is Read of a file's content.
func Parse(b []byte, path string, origin Origin, schema map[string]Kind) (*Layer, error) {
	l := &Layer{Origin: origin, Path: path, Values: map[string]Value{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return l, nil // an empty file sets nothing
		}
		return nil, &Error{Path: path, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(doc.Content) == 0 {
		return l, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Path: path, Line: root.Line, Msg: "expected a mapping of settings (key: value)"}
	}
	d := decoder{layer: l, schema: schema}
	if err := d.mapping(root, ""); err != nil {
		return nil, err
	}
	return l, nil
}

type decoder struct {
	layer  *Layer
	schema map[string]Kind
}

func (d decoder) errorf(n *yaml.Node, format string, args ...any) error {
	return &Error{Path: d.layer.Path, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// mapping decodes the settings under prefix ("" or "head.").
func (d decoder) mapping(m *yaml.Node, prefix string) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		path := prefix + k.Value
		if seen[k.Value] {
			return d.errorf(k, "%s is given twice", path)
		}
		seen[k.Value] = true
		if kind, ok := d.schema[path]; ok {
			val, err := d.value(v, path, kind)
			if err != nil {
				return err
			}
			d.layer.Values[path] = val
			continue
		}
		if path == TypesKey {
			types, err := d.types(v)
			if err != nil {
				return err
			}
			d.layer.Types = types
			continue
		}
		if !d.isSection(path) {
			return d.errorf(k, "unknown key %q%s: use one of %s", k.Value, inSection(prefix), strings.Join(d.keysUnder(prefix), ", "))
		}
		if v.Kind != yaml.MappingNode {
			return d.errorf(v, "%s: expected a mapping of its settings (%s)", path, strings.Join(d.keysUnder(path+"."), ", "))
		}
		if err := d.mapping(v, path+"."); err != nil {
			return err
		}
	}
	return nil
}

func inSection(prefix string) string {
	if prefix == "" {
		return ""
	}
	return " in " + strings.TrimSuffix(prefix, ".")
}

func (d decoder) isSection(path string) bool {
	for p := range d.schema {
		if strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

// keysUnder lists the keys valid directly under prefix, sorted.
func (d decoder) keysUnder(prefix string) []string {
	set := map[string]bool{}
	if prefix == "" {
		set[TypesKey] = true
	}
	for p := range d.schema {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			first, _, _ := strings.Cut(rest, ".")
			set[first] = true
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// value checks one setting against its kind.
func (d decoder) value(v *yaml.Node, path string, kind Kind) (Value, error) {
	src := Source{Origin: d.layer.Origin, Path: d.layer.Path, Line: v.Line}
	if kind == List {
		texts, err := d.strings(v, path)
		return Value{Texts: texts, Source: src}, err
	}
	text, err := scalar(v, kind)
	if err != nil {
		return Value{}, d.errorf(v, "%s: expected %s, got %s", path, kind.expected(), describe(v))
	}
	return Value{Texts: []string{text}, Source: src}, nil
}

// strings decodes a list of strings (or one string).
func (d decoder) strings(v *yaml.Node, path string) ([]string, error) {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	texts := make([]string, 0, len(items))
	for _, it := range items {
		text, err := scalar(it, String)
		if err != nil {
			return nil, d.errorf(it, "%s: expected %s, got %s", path, List.expected(), describe(it))
		}
		texts = append(texts, text)
	}
	return texts, nil
}

// scalar is a scalar node's text in the form the flag parsers take.
func scalar(v *yaml.Node, kind Kind) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", errors.New("not a scalar")
	}
	switch kind {
	case Int:
		var n int64
		if v.Tag != "!!int" || v.Decode(&n) != nil {
			return "", errors.New("not an integer")
		}
		return strconv.FormatInt(n, 10), nil
	case Bool:
		var b bool
		if v.Tag != "!!bool" || v.Decode(&b) != nil {
			return "", errors.New("not a bool")
		}
		return strconv.FormatBool(b), nil
	case Float:
		var f float64
		if (v.Tag != "!!int" && v.Tag != "!!float") || v.Decode(&f) != nil {
			return "", errors.New("not a number")
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	case Duration:
		if _, err := time.ParseDuration(v.Value); err != nil {
			return "", err
		}
	}
	return v.Value, nil
}

// describe names what a node holds, for an error.
func describe(v *yaml.Node) string {
	switch {
	case v.Kind == yaml.MappingNode:
		return "a mapping"
	case v.Kind == yaml.SequenceNode:
		return "a list"
	case v.Tag == "!!null":
		return "nothing"
	}
	return strconv.Quote(v.Value)
}

// UserPath is the user's defaults: $XDG_CONFIG_HOME/sraybatch/config.yaml,
// or ~/.config/sraybatch/config.yaml (the XDG base directory default).
func UserPath(getenv func(string) string) string {
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) { // the spec says to ignore a relative one
		dir = filepath.Join(getenv("HOME"), ".config")
	}
	return filepath.Join(dir, "sraybatch", "config.yaml")
}

// SiteEnv overrides SitePath (for tests, and sites that keep /etc read-only).
const SiteEnv = "SRAYBATCH_SITE_CONFIG"

// SitePath is the site's defaults, where admins put account, partition and
// the module lines.
func SitePath(getenv func(string) string) string {
	if p := getenv(SiteEnv); p != "" {
		return p
	}
	return "/etc/sraybatch/config.yaml"
}

// Layers reads the cluster file (if any), then the user's and the site's
// defaults: the order of precedence, first wins.
func Layers(file string, getenv func(string) string, schema map[string]Kind) ([]*Layer, error) {
	var layers []*Layer
	for _, f := range []struct {
		path   string
		origin Origin
	}{{file, OriginFile}, {UserPath(getenv), OriginUser}, {SitePath(getenv), OriginSite}} {
		if f.path == "" {
			continue
		}
		l, err := Read(f.path, f.origin, schema)
		if err != nil {
			return nil, err
		}
		if l != nil {
			layers = append(layers, l)
		}
	}
	return layers, nil
}

// Lookup is a setting's value from the first layer that has it.
func Lookup(layers []*Layer, path string) (Value, bool) {
	for _, l := range layers {
		if v, ok := l.Values[path]; ok {
			return v, true
		}
	}
	return Value{}, false
}

// Types are the worker types of the first layer that has any: types are
// not merged across files.
func Types(layers []*Layer) []TypeDef {
	i := slices.IndexFunc(layers, func(l *Layer) bool { return l.Types != nil })
	if i < 0 {
		return nil
	}
	return layers[i].Types
}
