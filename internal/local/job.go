package local

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/proctree"
)

// jobStart is the go-ahead Submit writes to a job's process once its pid is
// recorded; an EOF instead means the submission was abandoned.
type jobStart struct {
	Script    string    `json:"script"`
	Dir       string    `json:"dir"`
	Env       []string  `json:"env"`
	Log       string    `json:"log"`
	ExitPath  string    `json:"exit_path"`
	ClaimsDir string    `json:"claims_dir,omitempty"`
	Claims    []Claimed `json:"claims,omitempty"`
	// Self is the job's process as Submit recorded it; its claims name it.
	Self Proc `json:"self"`
}

// leftoverGrace is how long processes left behind by the batch script get
// between SIGTERM and SIGKILL.
const leftoverGrace = 3 * time.Second

// RunJob is the job's process (`sraybatch local-job`, started by Submit): it
// reads the go-ahead from start, runs the batch script with bash, forwards
// the signals it gets to it, kills whatever the script left behind, releases
// the job's GPU claims and writes the exit file Jobs reads. It returns the
// script's exit status.
func RunJob(start io.Reader) int {
	var js jobStart
	if err := json.NewDecoder(start).Decode(&js); err != nil {
		return 1 // abandoned before it was recorded: nothing to report to
	}
	// Orphans of the node (Ray processes that escaped its supervisor) are
	// reparented here, so none outlives the job.
	proctree.BecomeSubreaper()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)

	code, sigName, runErr := runScript(js, sigs)

	proctree.KillTree(leftoverGrace)
	if js.ClaimsDir != "" {
		(&Claims{Base: js.ClaimsDir}).Release(js.Claims, js.Self)
	}
	ex := exitRecord{SchemaVersion: cluster.SchemaVersion, ExitCode: code, Signal: sigName, Ended: time.Now().UTC()}
	if runErr != nil {
		ex.Error = runErr.Error()
	}
	if err := cluster.WriteJSON(js.ExitPath, ex); err != nil {
		fmt.Fprintf(os.Stderr, "sraybatch local-job: %v\n", err)
	}
	return code
}

// runScript runs the batch script to its end and returns its exit status
// (128+N when killed by signal N).
func runScript(js jobStart, sigs <-chan os.Signal) (code int, sigName string, err error) {
	log, err := os.OpenFile(js.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 1, "", fmt.Errorf("open job output: %w", err)
	}
	defer log.Close()
	cmd := exec.Command("bash", js.Script)
	cmd.Dir, cmd.Env = js.Dir, js.Env
	cmd.Stdout, cmd.Stderr = log, log
	// The script shares this process's group, so Cancel's SIGTERM reaches it;
	// and it hears of this process's death even when that is a SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(log, "sraybatch local-job: %v\n", err)
		return 1, "", fmt.Errorf("start bash: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	for {
		select {
		case sig := <-sigs:
			cmd.Process.Signal(sig)
		case <-done:
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if ws.Signaled() {
				return 128 + int(ws.Signal()), ws.Signal().String(), nil
			}
			return cmd.ProcessState.ExitCode(), "", nil
		}
	}
}
