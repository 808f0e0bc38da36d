package raynode

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER.
const prSetChildSubreaper = 36

// BecomeSubreaper makes orphaned descendants of this process its children
// instead of init's. Ray puts its workers in process groups of their own and
// its Python processes overwrite their environment with their titles, so
// neither a group kill nor an environment marker finds them all; the process
// tree under a subreaper does, and holds only what this node started — never
// other users' or other nodes' Ray (which `ray stop` would kill).
func BecomeSubreaper() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return errno
	}
	return nil
}

// Descendants lists the live processes below pid.
func Descendants(pid int) []int {
	children := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		ppid, state, ok := readStat(d)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// readStat returns a process's parent and state from /proc/PID/stat.
func readStat(procDir string) (ppid int, state byte, ok bool) {
	stat, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return 0, 0, false
	}
	// The command name in parentheses may itself hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0, 0, false
	}
	fields := bytes.Fields(stat[i+2:])
	if len(fields) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(fields[1]))
	return ppid, fields[0][0], err == nil
}

// KillDescendants signals every process below this one and returns how many.
func KillDescendants(sig syscall.Signal) int {
	pids := Descendants(os.Getpid())
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
	return len(pids)
}

// ReapOrphans collects the exit status of orphans reparented to this
// subreaper, so none lingers as a zombie. Call it only when no os/exec child
// is still being waited for.
func ReapOrphans() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
