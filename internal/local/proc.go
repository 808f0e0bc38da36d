package local

import (
	"fmt"
	"os"
	"syscall"

	"github.com/sraybatch/sraybatch/internal/proctree"
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
	st, ok := proctree.ReadProcStat(pid)
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
	st, ok := proctree.ReadProcStat(p.PID)
	return ok && st.Start == p.Start && st.Live()
}

// signalSession sends sig to every process of the session sid leads.
func signalSession(sid int, sig syscall.Signal) {
	for _, pid := range proctree.Session(sid) {
		syscall.Kill(pid, sig)
	}
}
