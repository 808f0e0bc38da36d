// Command sraybatch runs elastic Ray clusters on SLURM.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/pflag"
	"github.com/sraybatch/sraybatch/internal/oneline"
	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, documented in every command's --help.
const (
	exitOK      = 0
	exitFailure = 1 // SLURM, Ray or a job failed
	exitUsage   = 2 // bad flags or input; nothing was changed
	exitTimeout = 3 // --wait gave up before the cluster was ready
	// exitInterrupted is the shell's 128+SIGINT, so scripts see a Ctrl+C as one.
	exitInterrupted = 130
)

const exitCodesHelp = `Exit status:
  0    success
  1    failure: SLURM refused, a job failed, or Ray did not come up
  2    bad flags or input (nothing was changed)
  3    --wait timed out (the jobs keep running; see sraybatch status)
  130  interrupted by Ctrl+C (submitted jobs keep running; see sraybatch status)`

// IOStreams are the command's streams: results on Out, progress and errors on ErrOut.
type IOStreams struct {
	Out, ErrOut io.Writer
	// OutIsTTY selects a styled table over plain TSV.
	OutIsTTY bool
	// Color allows ANSI colours on Out: a terminal, and the user did not opt
	// out (NO_COLOR, TERM=dumb). Decided once, in main.
	Color bool
}

// usageError is bad input: exit 2 and a hint to --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// timeoutError is a --wait that ran out of time.
type timeoutError struct{ err error }

func (e timeoutError) Error() string { return e.err.Error() }
func (e timeoutError) Unwrap() error { return e.err }

// interruptedError is a command that Ctrl+C ended; its message says what
// keeps running.
type interruptedError struct{ err error }

func (e interruptedError) Error() string { return e.err.Error() }
func (e interruptedError) Unwrap() error { return e.err }

// interrupted classifies the error of a command whose context was cancelled
// (main cancels it on SIGINT): a wait that says what keeps running already
// is an interruptedError; any other error is marked as one.
func interrupted(err error) error {
	var ie interruptedError
	switch {
	case errors.As(err, &ie):
		return err
	case errors.Is(err, context.Canceled):
		return interruptedError{errors.New("interrupted")}
	}
	return interruptedError{fmt.Errorf("interrupted: %w", err)}
}

type command struct {
	name, summary string
	run           func(ctx context.Context, io IOStreams, args []string) error
	hidden        bool
}

func commands() []command {
	return []command{
		{name: "up", summary: "start a cluster: submit the Ray head job (and workers)", run: runUpCmd},
		{name: "grow", summary: "add worker jobs to a running cluster", run: runGrowCmd},
		{name: "train", summary: "run the training driver as a job: the elastic demo loop or your own", run: runTrainCmd},
		{name: "status", summary: "show a cluster's jobs, SLURM state and Ray membership", run: runStatusCmd},
		{name: "events", summary: "show a cluster's timeline: jobs, Ray membership, driver steps, autoscaler", run: runEventsCmd},
		{name: "logs", summary: "show a job's output, or its Ray logs (--ray); -f follows", run: runLogsCmd},
		{name: "report", summary: "write a self-contained HTML page: job timelines, GPUs over time, GPU-hours", run: runReportCmd},
		{name: "env", summary: "print the exports that point Ray's own tools at a cluster", run: runEnvCmd},
		{name: "tunnel", summary: "print the ssh command that reaches the head's dashboard", run: runTunnelCmd},
		{name: "autoscale", summary: "show or change a live cluster's autoscaler (it follows Ray's demand)", run: runAutoscaleCmd},
		{name: "free", summary: "show the GPUs free right now per node and partition", run: runFreeCmd},
		{name: "down", summary: "cancel every job of a cluster and wait until they are gone", run: runDownCmd},
		{name: "gpus", summary: "print this node's GPU inventory (NVML, else the job's environment)", run: runGpusCmd},
		{name: "version", summary: "print the sraybatch version", run: runVersionCmd},
		{name: "node", summary: "run one Ray node inside a job (used by the batch scripts)", run: runNodeCmd, hidden: true},
		{name: "local-job", summary: "run one job of the local backend (started by it)", run: runLocalJobCmd, hidden: true},
	}
}

func main() {
	ph := newPhases(os.Getenv(benchPhasesEnv), time.Now())
	ctx, stop := signal.NotifyContext(withPhases(context.Background(), ph), os.Interrupt)
	defer stop()
	tty := isTerminal(os.Stdout)
	streams := IOStreams{Out: os.Stdout, ErrOut: os.Stderr, OutIsTTY: tty, Color: useColor(tty, os.Getenv)}
	code := run(ctx, streams, os.Args[1:])
	ph.write()
	os.Exit(code)
}

// run dispatches a command line and decides the exit code, in one place.
func run(ctx context.Context, io IOStreams, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(io.Out)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, io, args[1:])
			if err != nil && ctx.Err() != nil {
				err = interrupted(err)
			}
			return exitCode(io, c.name, err)
		}
	}
	fmt.Fprintf(io.ErrOut, "sraybatch: unknown command %q: see sraybatch --help\n", args[0])
	return exitUsage
}

func exitCode(io IOStreams, name string, err error) int {
	if err == nil || errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	msg := oneline.Of(err.Error())
	var ue usageError
	var te timeoutError
	var ie interruptedError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(io.ErrOut, "sraybatch %s: %s\n", name, msg)
		return exitUsage
	case errors.As(err, &te):
		fmt.Fprintf(io.ErrOut, "sraybatch %s: %s\n", name, msg)
		return exitTimeout
	case errors.As(err, &ie):
		fmt.Fprintf(io.ErrOut, "sraybatch %s: %s\n", name, msg)
		return exitInterrupted
	default:
		fmt.Fprintf(io.ErrOut, "sraybatch %s: %s\n", name, msg)
		return exitFailure
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `sraybatch runs elastic Ray clusters on SLURM: one job per Ray node, grown while it runs.

Usage: sraybatch <command> [flags]

Commands:
`)
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprint(w, `
Typical session:
  sraybatch up --name exp1 --gpus-per-node 1 --time 2:00:00 --wait
  sraybatch grow --cluster exp1 -n 2 --wait
  sraybatch status --cluster exp1
  eval "$(sraybatch env --cluster exp1)"; ray status
  sraybatch down --cluster exp1

Run 'sraybatch <command> --help' for a command's flags.
State lives in $SRAYBATCH_HOME (default ~/.sraybatch).

`+exitCodesHelp+"\n")
}

// isTerminal asks the terminal driver (TCGETS): /dev/null is a character
// device too, and must get TSV like any other non-terminal.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// useColor decides whether a terminal gets ANSI colours: not when NO_COLOR is
// set to anything (https://no-color.org), nor on a dumb terminal.
func useColor(tty bool, getenv func(string) string) bool {
	return tty && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}
