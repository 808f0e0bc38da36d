//go:build e2e

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/proctree"
)

// downLeavingNothing takes the cluster down and checks that nothing of it is
// left: every job it submitted has ended in SLURM, none of the processes it
// ran before down still runs (supervisors and their trees, a container
// runtime's and what ran inside, also what lost its root when a SquashFS
// image's FUSE server went), and no process names one of its jobs' Ray temp
// dirs (a Ray process that left its supervisor's tree).
func (e e2eEnv) downLeavingNothing(t *testing.T, dir cluster.Dir, name string) {
	t.Helper()
	procs := livingProcs(dir.Path)
	if len(procs) == 0 {
		t.Fatalf("cluster %s has no processes before down", name)
	}
	jobs := submittedJobs(t, dir)
	e.mustSray(t, "down", "--cluster", name)
	waitFor(t, "every job of the cluster until it ended", time.Minute, func() bool { return !slurmJobActive(jobs...) })
	// Down is asynchronous: a job ends in SLURM before the last of its
	// processes has exited.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		left := append(stillRunning(procs), rayProcessesOf(jobs)...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of %s left 30 s after its jobs ended: %v", name, left)
			return
		}
	}
}

// submittedJobs is the key of every job the cluster submitted.
func submittedJobs(t *testing.T, dir cluster.Dir) []string {
	t.Helper()
	subs, err := dir.Submissions()
	if err != nil {
		t.Fatalf("submissions of %s: %v", dir.Path, err)
	}
	var jobs []string
	for _, s := range subs {
		jobs = append(jobs, s.JobKeys()...)
	}
	return jobs
}

// livingProcs are the cluster's processes now (its supervisors and
// everything below them), each by pid and start time, so a pid reused
// later is not taken for one of them.
func livingProcs(clusterDir string) map[int]uint64 {
	out := map[int]uint64{}
	for _, p := range clusterProcesses(clusterDir) {
		if st, ok := proctree.ReadProcStat(p); ok && st.Live() {
			out[p] = st.Start
		}
	}
	return out
}

// stillRunning describes those of procs that still run.
func stillRunning(procs map[int]uint64) []string {
	var left []string
	for p, start := range procs {
		if st, ok := proctree.ReadProcStat(p); ok && st.Live() && st.Start == start {
			left = append(left, fmt.Sprint(p))
		}
	}
	return left
}

// rayProcessesOf describes every live process that names one of jobs' Ray
// temp dirs (srb-<job>-…).
func rayProcessesOf(jobs []string) []string {
	var left []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, j := range jobs {
			if strings.Contains(string(b), "/srb-"+j+"-") {
				left = append(left, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
	}
	return left
}
