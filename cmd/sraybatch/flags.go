package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// addClusterFlag adds --cluster (-c), the cluster a command works on; every
// command that takes one defines it here, with the same help.
func addClusterFlag(fs *pflag.FlagSet, name *string) {
	fs.StringVarP(name, "cluster", "c", "", "cluster name (default: the only live cluster)")
}

// addOutputFlag adds --output (-o), the format of a command's results
// (outputFormat resolves it); every command that prints rows defines it here.
func addOutputFlag(fs *pflag.FlagSet, format *string) {
	fs.StringVarP(format, "output", "o", "", "table, tsv or json (default: table on a terminal, tsv otherwise)")
}

// outputFormat resolves --output: a styled table on a terminal, TSV when
// piped, JSON when asked.
func outputFormat(flag string, tty bool) (string, error) {
	switch flag {
	case "table", "tsv", "json":
		return flag, nil
	case "":
		if tty {
			return "table", nil
		}
		return "tsv", nil
	}
	return "", usagef("invalid --output %q: use table, tsv or json", flag)
}

// newFlagSet makes a command's flag set with help text that ends in the exit codes.
func newFlagSet(name, usage string, io IOStreams) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.ErrOut)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(io.Out, "%s\n\nFlags:\n%s\n%s\n", strings.TrimSpace(usage), fs.FlagUsages(), exitCodesHelp)
	}
	return fs
}

// parseFlags parses and turns flag errors into usage errors.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usagef("%v (see --help)", err)
	}
	return nil
}

// parseFlagsOnly parses a command that takes flags and no arguments.
func parseFlagsOnly(fs *pflag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see --help)", fs.Arg(0))
	}
	return nil
}

// optionalFloat is a float flag without a value of its own: unset, it stays
// nil and the command picks the default its help text names. A sentinel
// such as -1 would show in --help as "(default -1)"; pflag shows no
// default for a value whose String is "".
type optionalFloat struct{ p **float64 }

func (f optionalFloat) String() string {
	if f.p == nil || *f.p == nil {
		return ""
	}
	return strconv.FormatFloat(**f.p, 'g', -1, 64)
}

func (f optionalFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	*f.p = &v
	return nil
}

// Type names the value in --help ("float", as pflag's own float flags).
func (f optionalFloat) Type() string { return "float64" }
