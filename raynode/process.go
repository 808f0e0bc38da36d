package raynode

import (
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/proctree"
)

// Processes starts and stops what the supervisor runs: `ray start --block`
// and a driver's command. Tests replace it so the supervisor's Run can be
// driven without starting Ray.
type Processes interface {
	// Adopt makes processes orphaned below the supervisor its own children
	// (a child subreaper), so Leftovers can find every one of them.
	Adopt() error
	// Start starts cmd in a process group of its own, ended with the
	// supervisor.
	Start(cmd *exec.Cmd) (Process, error)
	// StopLeftovers stops every process still below the supervisor (SIGTERM,
	// grace, SIGKILL) and returns how many it found; never another's.
	StopLeftovers(grace time.Duration) int
}

// Process is one started process.
type Process interface {
	// Done is closed once the process has exited.
	Done() <-chan struct{}
	// Err is how it exited (exec.Cmd.Wait's error); valid after Done.
	Err() error
	// ExitCode is its exit status, -1 when killed by a signal; valid after Done.
	ExitCode() int
	// Stop sends sig (to its whole group when group is set) and, after
	// grace, SIGKILL to its group; it returns once the process is gone.
	Stop(sig syscall.Signal, group bool, grace time.Duration)
}

type systemProcesses struct{}

func (systemProcesses) Adopt() error { return proctree.BecomeSubreaper() }

func (systemProcesses) StopLeftovers(grace time.Duration) int { return proctree.KillTree(grace) }

func (systemProcesses) Start(cmd *exec.Cmd) (Process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// child is a process started by systemProcesses, waited for in the
// background so its end can be selected on.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (c *child) Done() <-chan struct{} { return c.done }
func (c *child) Err() error            { return c.err }
func (c *child) ExitCode() int         { return c.cmd.ProcessState.ExitCode() }

func (c *child) Stop(sig syscall.Signal, group bool, grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	pid := c.cmd.Process.Pid
	if group {
		syscall.Kill(-pid, sig)
	} else {
		c.cmd.Process.Signal(sig)
	}
	select {
	case <-c.done:
	case <-time.After(grace):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-c.done
	}
}

// Pid is the process's id, for parentLast.
func (c *child) Pid() int { return c.cmd.Process.Pid }

// parentLastGrace is what the runtime's own process gets to unmount and
// exit once nothing runs inside any more.
const parentLastGrace = 5 * time.Second

// parentLast is a container runtime's process that stays the parent of
// what it runs (ch-run serving a SquashFS image through FUSE): on SIGTERM
// it unmounts the image and exits without signalling its child, which
// would go on with a dead root. So Stop sends sig to the processes inside
// first (`ray start --block` stops its own children on SIGTERM), then, once
// nothing of the container is left, SIGTERM to the parent.
type parentLast struct {
	Process
	pid int
}

func (p parentLast) Stop(sig syscall.Signal, group bool, grace time.Duration) {
	select {
	case <-p.Done():
		return
	default:
	}
	// What runs inside shares the child's mount namespace, also once
	// orphaned below the supervisor when `ray start` has exited.
	inside := proctree.Children(p.pid)
	if len(inside) == 0 {
		p.Process.Stop(syscall.SIGTERM, group, parentLastGrace)
		return
	}
	ns := proctree.MountNS(inside[0])
	for _, pid := range inside {
		syscall.Kill(pid, sig)
	}
	left := func() []int { return proctree.Descendants(p.pid) }
	if ns != "" && ns != proctree.MountNS(p.pid) {
		left = func() []int { return proctree.InMountNS(os.Getpid(), ns) }
	}
	for deadline := time.Now().Add(grace); time.Now().Before(deadline) && len(left()) > 0; {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range left() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	p.Process.Stop(syscall.SIGTERM, group, parentLastGrace)
}
