package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/sraybatch/sraybatch/raynode"
)

// Proc names one process for as long as it lives: a pid alone can be
// recycled, a pid and its start time cannot.
type Proc struct {
	PID int `json:"pid"`
	// Start is field 22 of /proc/PID/stat: clock ticks from boot to the start.
	Start uint64 `json:"start_ticks"`
}

// Self is the calling process.
func Self() (Proc, error) { return procOf(os.Getpid()) }

// procOf reads a live process's start time.
func procOf(pid int) (Proc, error) {
	st, ok := raynode.ReadProcStat(pid)
	if !ok {
		return Proc{}, fmt.Errorf("process %d: no such process", pid)
	}
	return Proc{PID: pid, Start: st.Start}, nil
}

// Alive reports whether the process still runs: a zombie or a recycled pid
// (same pid, other start time) is not the process that was recorded.
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, ok := raynode.ReadProcStat(p.PID)
	return ok && st.Start == p.Start && st.Live()
}

// sessionMembers lists the live processes of session sid.
func sessionMembers(sid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, ok := raynode.ReadProcStat(pid); ok && st.Session == sid && st.Live() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// signalSession sends sig to every process of the session sid leads.
func signalSession(sid int, sig syscall.Signal) {
	for _, pid := range sessionMembers(sid) {
		syscall.Kill(pid, sig)
	}
}
