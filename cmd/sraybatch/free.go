package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/templates"
)

const freeUsage = `Usage: sraybatch free [--partition P] [--output table|tsv|json]

Show the GPUs free right now on each node and partition, from one sinfo call
(nodes that are down, drained or draining offer none). grow --fill submits a
worker for each of them.

Examples:
  sraybatch free
  sraybatch free --partition gpu -o json`

type freeOptions struct {
	Partition string
	Output    string
}

func runFreeCmd(ctx context.Context, io IOStreams, args []string) error {
	var o freeOptions
	fs := newFlagSet("free", freeUsage, io)
	fs.StringVarP(&o.Partition, "partition", "p", "", "only this partition")
	addOutputFlag(fs, &o.Output)
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runFree(ctx, io, a, o)
}

// freeNode is one row of `free`.
type freeNode struct {
	Node      string `json:"node"`
	Partition string `json:"partition"`
	State     string `json:"state"`
	Total     int    `json:"gpus_total"`
	Used      int    `json:"gpus_used"`
	Free      int    `json:"gpus_free"`
}

func runFree(ctx context.Context, io IOStreams, a *app, o freeOptions) error {
	format, err := outputFormat(o.Output, io.OutIsTTY)
	if err != nil {
		return err
	}
	if err := templates.SingleLine("--partition", o.Partition); err != nil {
		return usageError{err}
	}
	nodes, err := a.backends.Of(defaultBackend()).FreeGPUs(ctx, o.Partition)
	if err != nil {
		return fmt.Errorf("list free GPUs: %w", err)
	}
	rows := freeRows(nodes)
	switch format {
	case "json":
		enc := json.NewEncoder(io.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "tsv":
		printFree(io.Out, rows, false)
	default:
		printFree(io.Out, rows, true)
	}
	return nil
}

func freeRows(nodes []scheduler.NodeGPUs) []freeNode {
	rows := make([]freeNode, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, freeNode{Node: n.Node, Partition: n.Partition, State: n.State, Total: n.Total, Used: n.Used, Free: n.Free()})
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Partition != rows[j].Partition {
			return rows[i].Partition < rows[j].Partition
		}
		return rows[i].Node < rows[j].Node
	})
	return rows
}

func printFree(w io.Writer, rows []freeNode, styled bool) {
	t := table.NewWriter()
	t.SetOutputMirror(w)
	t.AppendHeader(table.Row{"PARTITION", "NODE", "STATE", "GPUS", "USED", "FREE"})
	// A node in several partitions has a row in each; its GPUs count once.
	total, counted := 0, map[string]bool{}
	for _, r := range rows {
		t.AppendRow(table.Row{r.Partition, r.Node, r.State, r.Total, r.Used, r.Free})
		if !counted[r.Node] {
			counted[r.Node] = true
			total += r.Free
		}
	}
	if styled {
		t.AppendFooter(table.Row{"", "", "", "", "free", total})
	}
	renderTable(t, styled)
}
