package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/config"
)

// upKeys is THE mapping of up's flags to the keys of a cluster file and of
// the user's and site's defaults: every flag of up has one key (a test
// checks both ways), so adding a flag is adding its line here. The node's
// shape flags are the head's (head:); worker types inherit what they leave
// out (config.Resolve).
var upKeys = []config.Key{
	{Flag: "name", Path: "name"},
	{Flag: "gpus-per-node", Path: "head.gpus"},
	{Flag: "cpus-per-node", Path: "head.cpus"},
	{Flag: "mem", Path: "head.mem"},
	{Flag: "partition", Path: "head.partition"},
	{Flag: "time", Path: "head.time"},
	{Flag: "constraint", Path: "head.constraint"},
	{Flag: "sbatch-arg", Path: "head.sbatch_args"},
	{Flag: "worker-partition", Path: "worker_partition"},
	{Flag: "account", Path: "account"},
	{Flag: "qos", Path: "qos"},
	{Flag: "workers", Path: "start_workers"},
	{Flag: "setup", Path: "setup"},
	{Flag: "ray", Path: "ray"},
	{Flag: "log-dir", Path: "log_dir"},
	{Flag: "port-range", Path: "port_range"},
	{Flag: "node-ip", Path: "node_ip"},
	{Flag: "interface", Path: "interface"},
	{Flag: "object-store-mb", Path: "object_store_mb"},
	{Flag: "drain-before", Path: "drain_before"},
	{Flag: "insecure", Path: "insecure"},
	{Flag: "dry-run", Path: "dry_run"},
	{Flag: "wait", Path: "wait"},
	{Flag: "timeout", Path: "wait_timeout"},
	{Flag: "autoscale", Path: "autoscale.enabled"},
	{Flag: "min-workers", Path: "autoscale.min_workers"},
	{Flag: "max-workers", Path: "autoscale.max_workers"},
	{Flag: "max-pending", Path: "autoscale.max_pending"},
	{Flag: "idle-timeout", Path: "autoscale.idle_timeout"},
	{Flag: "upscale-delay", Path: "autoscale.upscale_delay"},
	{Flag: "autoscale-interval", Path: "autoscale.interval"},
	{Flag: "cpu-only-demand", Path: "autoscale.cpu_only_demand"},
	{Flag: "backend", Path: "backend"},
	{Flag: "metrics-sd-dir", Path: "metrics_sd_dir"},
	{Flag: "foreground", Path: "foreground"},
	{Flag: "rollover", Path: "rollover.enabled"},
	{Flag: "rollover-before", Path: "rollover.before"},
	{Flag: "max-generations", Path: "rollover.max_generations"},
	{Flag: "head-wait", Path: "rollover.head_wait"},
	{Flag: "container", Path: "container.image"},
	{Flag: "container-runtime", Path: "container.runtime"},
	{Flag: "container-mount", Path: "container.mounts"},
	{Flag: "container-env", Path: "container.env"},
}

// upFlagsWithoutKey are the flags of up that no file sets: the file itself.
var upFlagsWithoutKey = []string{"file"}

// kindOfFlag maps pflag's value types to the kinds a file's value is
// checked against.
var kindOfFlag = map[string]config.Kind{
	"string": config.String, "int": config.Int, "bool": config.Bool, "float64": config.Float,
	"duration": config.Duration, "stringArray": config.List,
}

// upSchema is each key's kind, from its flag's type.
func upSchema(fs *pflag.FlagSet) (map[string]config.Kind, error) {
	schema := make(map[string]config.Kind, len(upKeys))
	for _, k := range upKeys {
		f := fs.Lookup(k.Flag)
		if f == nil {
			return nil, fmt.Errorf("up has no flag --%s for key %s", k.Flag, k.Path)
		}
		kind, ok := kindOfFlag[f.Value.Type()]
		if !ok {
			return nil, fmt.Errorf("flag --%s: no file kind for a %s", k.Flag, f.Value.Type())
		}
		schema[k.Path] = kind
	}
	return schema, nil
}

// setting is one effective setting of up and where it came from.
type setting struct {
	Key, Flag, Value string
	// Source is "flag", "default", or a file's "ORIGIN PATH:LINE"; At is
	// the file's "PATH:LINE" alone ("" unless a file gave it).
	Source, At string
}

// applyFiles reads the cluster file (up -f) and the user's and site's
// defaults, and sets every flag not given on the command line from the
// first of them that has its key: flags > file > user > site > default.
// The worker types come from the first file that has any.
func (o *upOptions) applyFiles(fs *pflag.FlagSet, getenv func(string) string) error {
	schema, err := upSchema(fs)
	if err != nil {
		return err
	}
	layers, err := config.Layers(o.File, getenv, schema)
	if err != nil {
		return usageError{err}
	}
	o.settings = o.settings[:0]
	for _, k := range upKeys {
		s := setting{Key: k.Path, Flag: k.Flag, Source: "default"}
		if fs.Changed(k.Flag) {
			s.Source = "flag"
		} else if v, ok := config.Lookup(layers, k.Path); ok {
			for _, text := range v.Texts {
				if err := fs.Set(k.Flag, text); err != nil {
					return usagef("%s:%d: %s: %v", v.Source.Path, v.Source.Line, k.Path, err)
				}
			}
			s.Source, s.At = v.Source.String(), fmt.Sprintf("%s:%d", v.Source.Path, v.Source.Line)
		}
		s.Value = fs.Lookup(k.Flag).Value.String()
		o.settings = append(o.settings, s)
	}
	o.typeDefs = config.Types(layers)
	return nil
}

// fromFiles names the file and line of each file-given setting a usage
// error is about: up's checks of its values name flags, and a user who never
// typed --time must be led to the line that set it. Other errors pass as
// they are, and so do those that name their file and line already.
func (o upOptions) fromFiles(err error) error {
	var ue usageError
	var located *config.Error
	if !errors.As(err, &ue) || errors.As(err, &located) {
		return err
	}
	var at []string
	for _, s := range o.settings {
		if s.At != "" && mentionsFlag(ue.Error(), s.Flag) {
			at = append(at, s.At+": "+s.Key)
		}
	}
	if len(at) == 0 {
		return err
	}
	return usageError{fmt.Errorf("%s: %w", strings.Join(at, ", "), ue.err)}
}

// mentionsFlag reports whether msg names --flag itself, not a longer flag
// that begins with it (--time in "--timeout").
func mentionsFlag(msg, flag string) bool {
	for rest := msg; ; {
		i := strings.Index(rest, "--"+flag)
		if i < 0 {
			return false
		}
		rest = rest[i+2+len(flag):]
		if rest == "" || !(rest[0] == '-' || rest[0] >= 'a' && rest[0] <= 'z' || rest[0] >= '0' && rest[0] <= '9') {
			return true
		}
	}
}

// ofType names the worker type an error of its script is about, and the
// file and line that define it when a file does.
func ofType(err error, name string, defs []config.TypeDef) error {
	for _, d := range defs {
		if d.Name == name {
			return usageError{&config.Error{Path: d.Source.Path, Line: d.Line, Msg: "worker type " + name + ": " + err.Error()}}
		}
	}
	return usageError{err}
}

// printSettings writes the effective settings and the worker types as
// comment lines, so the dry run's output stays one shell document.
func printSettings(out io.Writer, settings []setting, types []cluster.WorkerType, defs []config.TypeDef) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "# effective settings (flag > file > user > site > default)")
	fmt.Fprintln(tw, "# KEY\tFLAG\tVALUE\tSOURCE")
	for _, s := range settings {
		fmt.Fprintf(tw, "# %s\t--%s\t%s\t%s\n", s.Key, s.Flag, showValue(s.Value), s.Source)
	}
	tw.Flush()
	if len(types) == 0 {
		return
	}
	fmt.Fprintln(tw, "#\n# worker types (the first is the default)")
	fmt.Fprintln(tw, "# TYPE\tPARTITION\tGPUS\tCPUS\tMEM\tGRES\tMIN\tMAX\tIDLE\tRESOURCES\tLABELS\tSOURCE")
	for i, t := range types {
		n := t.Node
		fmt.Fprintf(tw, "# %s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", t.Name, dash(n.Partition), n.GPUs, n.CPUs,
			dash(n.Mem), dash(n.Gres), t.Min, t.Max, idleOf(t), pairs(t.Resources), pairs(t.Labels), defs[i].Source)
	}
	tw.Flush()
}

func showValue(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\n\"'") {
		return strconv.Quote(v)
	}
	return v
}

func idleOf(t cluster.WorkerType) string {
	if t.IdleTimeoutS == 0 {
		return "-"
	}
	return t.IdleTimeout().String()
}

// pairs shows a map as k=v,k=v in key order.
func pairs[V any](m map[string]V) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, m[k])
	}
	return strings.Join(parts, ",")
}
