// Package templates renders the batch scripts of sraybatch's jobs. Every
// value is validated or shell-quoted; the user's --setup lines are code by
// design and live in the cluster directory, never in the script.
package templates

import (
	"bytes"
	_ "embed"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"text/template"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

//go:embed node.sbatch.tmpl
var nodeTemplate string

// tmpl is parsed on first use, not at start: every command runs the
// package's initialisers, and only the ones that submit render a script.
var tmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("node").Funcs(template.FuncMap{"shq": ShellQuote}).Parse(nodeTemplate))
})

// Script is what a node job's batch script is made of.
type Script struct {
	Role       cluster.Role
	Cluster    string
	ClusterID  string
	ClusterDir string
	Binary     string
	TokenPath  string
	LogDir     string
	Insecure   bool
	Node       cluster.NodeSpec
	// Time is the job's --time (a worker's is capped at the head's time left).
	Time string
	// HeadJob is the head's job id; set for every role but the head.
	HeadJob string
	// Tasks > 0 renders a job array of that many one-node jobs.
	Tasks int
	// DriverArgv is the driver job's command (role driver only).
	DriverArgv []string
	// DrainBefore is how many seconds before the time limit SLURM sends USR1; 0: never.
	DrainBefore int
	// WorkerType is a worker's type (role worker only); "": the default.
	WorkerType string
	// MaxRestarts bounds a driver's re-runs after head handovers (rollover
	// clusters only); nil: not rendered.
	MaxRestarts *int
	// Follows is the driver job a successor driver job takes over from,
	// and Restarts the command's re-runs so far (role driver only).
	Follows  string
	Restarts int
}

var (
	// A head job is a job id, or an array task's key (ID_TASK): a rollover
	// cluster's worker promoted to head may be a task of `up --workers N`'s
	// array, and SLURM takes `--dependency=after:ID_TASK`.
	jobIDPattern = regexp.MustCompile(`^[0-9]+(_[0-9]+)?$`)
	// Values of structured #SBATCH options: SLURM never needs whitespace or
	// quotes in them, and refusing them keeps sbatch's own parsing predictable.
	sbatchValuePattern = regexp.MustCompile(`^[A-Za-z0-9_.:,@%+=/&|!*\[\]()-]+$`)
)

// Validate checks every field that reaches the script.
func (s Script) Validate() error {
	if err := cluster.ValidateName(s.Cluster); err != nil {
		return err
	}
	switch s.Role {
	case cluster.RoleHead:
		if s.HeadJob != "" || s.Tasks > 0 {
			return fmt.Errorf("a head job has no head job and no array")
		}
	case cluster.RoleWorker, cluster.RoleDriver:
		if !jobIDPattern.MatchString(s.HeadJob) {
			return fmt.Errorf("invalid head job id %q", s.HeadJob)
		}
	default:
		return fmt.Errorf("unknown role %q", s.Role)
	}
	if s.Follows != "" || s.Restarts != 0 {
		if s.Role != cluster.RoleDriver || s.Restarts < 0 {
			return fmt.Errorf("only a driver job follows another, with a restart count >= 0")
		}
		if s.Follows != "" && !jobIDPattern.MatchString(s.Follows) {
			return fmt.Errorf("invalid driver job id %q to follow", s.Follows)
		}
	}
	if s.WorkerType != "" {
		if s.Role != cluster.RoleWorker {
			return fmt.Errorf("only a worker job has a worker type")
		}
		if err := cluster.ValidateTypeName(s.WorkerType); err != nil {
			return err
		}
	}
	// The id is rendered into a comment line: a newline would make the rest code.
	if err := SingleLine("cluster id", s.ClusterID); err != nil {
		return err
	}
	if (s.Role == cluster.RoleDriver) != (len(s.DriverArgv) > 0) {
		return fmt.Errorf("a driver job, and only a driver job, has a command")
	}
	for _, arg := range s.DriverArgv {
		if strings.ContainsRune(arg, 0) {
			return fmt.Errorf("invalid driver command: an argument contains NUL")
		}
	}
	if s.Node.GPUs < 0 || s.Node.CPUs < 0 || s.Tasks < 0 || s.DrainBefore < 0 {
		return fmt.Errorf("GPU, CPU and task counts must not be negative")
	}
	for flag, v := range map[string]string{
		"--partition": s.Node.Partition, "--account": s.Node.Account, "--qos": s.Node.QOS,
		"--time": s.Time, "--constraint": s.Node.Constraint, "--mem": s.Node.Mem, "--gres": s.Node.Gres,
	} {
		if v != "" && !sbatchValuePattern.MatchString(v) {
			return fmt.Errorf("invalid %s %q: use letters, digits and _.:,@%%+=/&|!*[]()- only", flag, v)
		}
	}
	for _, arg := range s.Node.SbatchArgs {
		if err := SingleLine("--sbatch-arg", arg); err != nil {
			return err
		}
		if !strings.HasPrefix(arg, "-") {
			return fmt.Errorf("invalid --sbatch-arg %q: give an sbatch option such as --exclusive or --mail-type=END", arg)
		}
	}
	if strings.ContainsAny(s.LogDir, " \t") {
		return fmt.Errorf("invalid --log-dir %q: sbatch's --output cannot take whitespace; choose a path without it", s.LogDir)
	}
	for what, v := range map[string]string{"cluster directory": s.ClusterDir, "binary": s.Binary, "token path": s.TokenPath, "--log-dir": s.LogDir} {
		if err := SingleLine(what, v); err != nil {
			return err
		}
		if v == "" {
			return fmt.Errorf("%s must be set", what)
		}
	}
	return nil
}

// SingleLine rejects newlines and NUL, which would turn an #SBATCH comment
// into code or cut a value short.
func SingleLine(flag, v string) error {
	if strings.ContainsAny(v, "\n\r\x00") {
		return fmt.Errorf("invalid %s: it contains a newline or NUL; give it on one line", flag)
	}
	return nil
}

// Render produces the batch script.
func Render(s Script) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	data := struct {
		Script
		JobName, Output, AuthMode string
		LastTask                  int
	}{s, cluster.JobName(s.Cluster, s.Role), cluster.JobLogPattern(s.LogDir, s.Cluster, s.Role, s.Tasks > 0), cluster.AuthMode(s.Insecure), s.Tasks - 1}
	var buf bytes.Buffer
	if err := tmpl().Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render %s script: %w", s.Role, err)
	}
	return buf.Bytes(), nil
}

// ScriptExports are the variables every node's batch script exports (see
// node.sbatch.tmpl): jobs submitted from inside a job drop them from what
// they pass on (slurm.LoginEnv), since each script sets its own.
var ScriptExports = []string{"RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_USAGE_STATS_ENABLED"}

// ShellQuote returns s as one single-quoted shell word.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
