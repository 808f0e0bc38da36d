package main

import (
	"context"
	"fmt"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/templates"
)

const envUsage = `Usage: sraybatch env [--cluster NAME]

Print the shell exports that point Ray's own tools (ray status, ray list
nodes, ray.init()) at a cluster, with its token.

Example:
  eval "$(sraybatch env --cluster exp1)"; ray status`

type envOptions struct{ Cluster string }

func runEnvCmd(ctx context.Context, io IOStreams, args []string) error {
	var o envOptions
	fs := newFlagSet("env", envUsage, io)
	addClusterFlag(fs, &o.Cluster)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runEnv(io, a, o)
}

func runEnv(io IOStreams, a *app, o envOptions) error {
	dir, spec, err := a.resolveCluster(o.Cluster)
	if err != nil {
		return err
	}
	head, ok, err := dir.Head()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("cluster %s has not published its head address yet: wait with `sraybatch up --wait` or check `sraybatch status`", spec.Name)
	}
	fmt.Fprintf(io.Out, "unset RAY_AUTH_TOKEN\nexport RAY_ADDRESS=%s\nexport RAY_AUTH_MODE=%s\nexport RAY_AUTH_TOKEN_PATH=%s\n",
		templates.ShellQuote(head.Address), cluster.AuthMode(spec.Insecure), templates.ShellQuote(dir.TokenPathOf(head)))
	return nil
}
