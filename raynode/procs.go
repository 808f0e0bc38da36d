package raynode

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// MarkerEnv is set in the environment of `ray start`; every process Ray starts
// for this node inherits it. Ray puts its workers in process groups of their
// own, so a group kill misses them; the marker finds them all, and only them —
// never other users' or other nodes' Ray (which `ray stop` would kill).
const MarkerEnv = "SRAYBATCH_NODE_MARKER"

// MarkedProcesses lists live processes whose environment carries marker.
func MarkedProcesses(marker string) []int {
	needle := []byte(MarkerEnv + "=" + marker + "\x00")
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !bytes.Contains(append(env, 0), needle) {
			continue
		}
		if zombie(d) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func zombie(procDir string) bool {
	stat, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses, which may itself hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// KillMarked sends sig to every marked process and returns how many it found.
func KillMarked(marker string, sig syscall.Signal) int {
	pids := MarkedProcesses(marker)
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
	return len(pids)
}
