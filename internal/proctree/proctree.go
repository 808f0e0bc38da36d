// Package proctree finds and stops the processes a job started, by reading
// /proc: a process's stat line, the tree below a process, the members of a
// session. A supervisor that is a child subreaper (BecomeSubreaper) holds
// every process it started below itself, so KillTree stops exactly those,
// never another user's or another node's.
package proctree

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
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
	for _, p := range allPIDs() {
		if st, ok := ReadProcStat(p); ok && st.Live() {
			children[st.PPID] = append(children[st.PPID], p)
		}
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

// Children lists the live processes whose parent is pid.
func Children(pid int) []int {
	var out []int
	for _, p := range allPIDs() {
		if st, ok := ReadProcStat(p); ok && st.Live() && st.PPID == pid {
			out = append(out, p)
		}
	}
	return out
}

// MountNS names pid's mount namespace ("mnt:[4026532]"); "" when gone.
func MountNS(pid int) string {
	ns, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", "mnt"))
	return ns
}

// InMountNS lists the live processes below root in mount namespace ns: a
// container's processes, wherever they were reparented.
func InMountNS(root int, ns string) []int {
	var out []int
	for _, p := range Descendants(root) {
		if MountNS(p) == ns {
			out = append(out, p)
		}
	}
	return out
}

// ProcStat is what /proc/PID/stat says of a process.
type ProcStat struct {
	State   byte
	PPID    int
	Session int
	// Start is the start time in clock ticks since boot: with the pid, it
	// names one process for good, whatever reuses the pid later.
	Start uint64
}

// Live reports whether the process runs: not a zombie, not dead.
func (s ProcStat) Live() bool { return s.State != 'Z' && s.State != 'X' }

// ReadProcStat reads a process's /proc/PID/stat; ok is false when it is gone.
func ReadProcStat(pid int) (ProcStat, bool) {
	return readStat(filepath.Join("/proc", strconv.Itoa(pid)))
}

// readStat parses procDir/stat. The command name in parentheses may itself
// hold spaces and parentheses, so fields are counted from the last ')'.
func readStat(procDir string) (ProcStat, bool) {
	stat, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return ProcStat{}, false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return ProcStat{}, false
	}
	f := bytes.Fields(stat[i+2:]) // f[0] is field 3 (state)
	if len(f) < 2 {
		return ProcStat{}, false
	}
	st := ProcStat{State: f[0][0]}
	if st.PPID, err = strconv.Atoi(string(f[1])); err != nil {
		return ProcStat{}, false
	}
	if len(f) > 3 {
		st.Session, _ = strconv.Atoi(string(f[3]))
	}
	if len(f) > 19 {
		st.Start, _ = strconv.ParseUint(string(f[19]), 10, 64)
	}
	return st, true
}

// KillTree stops every process below this one: SIGTERM, up to grace for
// them to leave (reaping the orphans among them), then SIGKILL for the
// rest. It returns how many processes it found at first, and must be called
// only once no os/exec child is still being waited for (see ReapOrphans).
func KillTree(grace time.Duration) int {
	n := signalDescendants(syscall.SIGTERM)
	if n > 0 {
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) && len(Descendants(os.Getpid())) > 0 {
			ReapOrphans()
			time.Sleep(100 * time.Millisecond)
		}
		signalDescendants(syscall.SIGKILL)
	}
	ReapOrphans()
	return n
}

func signalDescendants(sig syscall.Signal) int {
	pids := Descendants(os.Getpid())
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
	return len(pids)
}

// Session lists the live processes of session sid.
func Session(sid int) []int {
	var pids []int
	for _, pid := range allPIDs() {
		if st, ok := ReadProcStat(pid); ok && st.Session == sid && st.Live() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func allPIDs() []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	pids := make([]int, 0, len(dirs))
	for _, d := range dirs {
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
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
