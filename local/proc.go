package local

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
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
	st, ok := readStat(pid)
	if !ok {
		return Proc{}, fmt.Errorf("process %d: no such process", pid)
	}
	return Proc{PID: pid, Start: st.start}, nil
}

// Alive reports whether the process still runs: a zombie or a recycled pid
// (same pid, other start time) is not the process that was recorded.
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, ok := readStat(p.PID)
	return ok && st.start == p.Start && st.state != 'Z' && st.state != 'X'
}

type procStat struct {
	state   byte
	ppid    int
	session int
	start   uint64
}

// readStat parses /proc/PID/stat. The command name in parentheses may hold
// spaces and parentheses itself, so fields are counted from the last ')'.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+2:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	session, err2 := strconv.Atoi(string(f[3]))
	start, err3 := strconv.ParseUint(string(f[19]), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], ppid: ppid, session: session, start: start}, true
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
		if st, ok := readStat(pid); ok && st.session == sid && st.state != 'Z' && st.state != 'X' {
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
