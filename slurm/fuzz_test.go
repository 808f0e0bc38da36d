package slurm_test

import (
	"testing"

	"github.com/sraybatch/sraybatch/slurm"
)

// Seeds live in testdata/fuzz/<FuzzName>/: real squeue and sinfo output
// plus the edge cases the table tests cover.

func FuzzParseJobs(f *testing.F) {
	f.Fuzz(func(t *testing.T, out []byte) {
		jobs, err := slurm.ParseJobs(out)
		if err != nil {
			return
		}
		for _, j := range jobs {
			if j.ID == "" || j.State == "" {
				t.Errorf("parsed a job without id or state: %+v", j)
			}
			if (j.ArrayJobID == "") != (j.ArrayTaskID == "") {
				t.Errorf("half an array id: %+v", j)
			}
			if j.GPUs < 0 || j.Elapsed < 0 || j.TimeLeft < 0 || j.TimeLimit < 0 {
				t.Errorf("negative quantity: %+v", j)
			}
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		d, unlimited, err := slurm.ParseDuration(s)
		if d < 0 {
			t.Errorf("ParseDuration(%q) = %v, negative", s, d)
		}
		if (err != nil || unlimited) && d != 0 {
			t.Errorf("ParseDuration(%q) = %v, %v, %v; want 0 with an error or unlimited", s, d, unlimited, err)
		}
	})
}

func FuzzParseGPUs(f *testing.F) {
	f.Fuzz(func(t *testing.T, tres string) {
		if n := slurm.ParseGPUs(tres); n < 0 {
			t.Errorf("ParseGPUs(%q) = %d, negative", tres, n)
		}
	})
}
