package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/sraybatch/sraybatch/internal/gpu"
)

const gpusUsage = `Usage: sraybatch gpus [--output table|tsv|json]

Print this node's GPUs as the NVIDIA driver (NVML) reports them: index, UUID,
model, memory used and total, utilization and the compute processes on each,
anyone's. Inside a job only the job's GPUs are listed: those named by
CUDA_VISIBLE_DEVICES, else SLURM_JOB_GPUS. Per-GPU NVML errors are warnings on
stderr. Without the driver a notice goes to stderr and the GPUs the job's
environment names are listed by ID only.

A styled table on a terminal, TSV when piped; --output json for scripts.

Examples:
  sraybatch gpus
  srun --jobid 1234 --overlap sraybatch gpus
  sraybatch gpus -o json | jq '.gpus[] | select(.processes | length > 0)'`

type gpusOptions struct {
	Output string
	// NewInventory opens the GPU source; its fallback notice goes to warn.
	NewInventory func(warn io.Writer) gpu.InventorySource
}

func runGpusCmd(ctx context.Context, io IOStreams, args []string) error {
	o := gpusOptions{NewInventory: systemInventory}
	fs := newFlagSet("gpus", gpusUsage, io)
	addOutputFlag(fs, &o.Output)
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	return runGpus(io, o)
}

func systemInventory(warn io.Writer) gpu.InventorySource { return gpu.System(os.Getenv, warn) }

func runGpus(io IOStreams, o gpusOptions) error {
	format, err := outputFormat(o.Output, io.OutIsTTY)
	if err != nil {
		return err
	}
	inv, err := o.NewInventory(io.ErrOut).Inventory()
	if err != nil {
		return err
	}
	switch format {
	case "json":
		enc := json.NewEncoder(io.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(inv); err != nil {
			return err
		}
	case "tsv":
		printGPUs(io.Out, inv, false)
	default:
		printGPUs(io.Out, inv, true)
	}
	for _, g := range inv.GPUs {
		if g.Error != "" {
			fmt.Fprintf(io.ErrOut, "warning: GPU %s: %s\n", g.ID, g.Error)
		}
	}
	return nil
}

var gpuColumns = table.Row{"INDEX", "UUID", "MODEL", "USED MIB", "TOTAL MIB", "UTIL %", "PROCESSES"}

func gpuRow(g gpu.Info) table.Row {
	used, total := "-", "-"
	if g.MemoryTotal > 0 { // zero when NVML could not tell
		used, total = strconv.FormatUint(g.MemoryUsed>>20, 10), strconv.FormatUint(g.MemoryTotal>>20, 10)
	}
	procs := make([]string, len(g.Processes))
	for i, p := range g.Processes {
		procs[i] = fmt.Sprintf("%d (%d MiB)", p.PID, p.UsedMemory>>20)
	}
	return table.Row{orDash(g.Index), dash(g.UUID), dash(g.Name), used, total, orDash(g.UtilizationPct), dash(strings.Join(procs, ", "))}
}

// orDash shows an unknown (nil) number as "-".
func orDash(v *int) string {
	if v == nil {
		return "-"
	}
	return strconv.Itoa(*v)
}

// printGPUs is a pure function of the inventory: a styled table for
// terminals, else TSV. Without NVML only the environment's IDs are known.
func printGPUs(w io.Writer, inv gpu.Inventory, styled bool) {
	t := table.NewWriter()
	t.SetOutputMirror(w)
	if inv.Source == "NVML" {
		t.AppendHeader(gpuColumns)
		for _, g := range inv.GPUs {
			t.AppendRow(gpuRow(g))
		}
	} else {
		t.AppendHeader(table.Row{"ID"})
		for _, g := range inv.GPUs {
			t.AppendRow(table.Row{g.ID})
		}
	}
	renderTable(t, styled)
}
