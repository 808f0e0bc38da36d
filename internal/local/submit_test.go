package local

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestNameTasks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pids  []int
		array bool
		want  []taskName
	}{
		{"plain job is its pid", []int{41}, false, []taskName{{Key: "41"}}},
		{"array of one", []int{41}, true, []taskName{{Key: "41_0", ArrayJobID: "41", ArrayTaskID: "0"}}},
		{"array is named after its first task", []int{41, 57, 12}, true, []taskName{
			{Key: "41_0", ArrayJobID: "41", ArrayTaskID: "0"},
			{Key: "41_1", ArrayJobID: "41", ArrayTaskID: "1"},
			{Key: "41_2", ArrayJobID: "41", ArrayTaskID: "2"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nameTasks(tc.pids, tc.array); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("nameTasks(%v, %v) = %+v, want %+v", tc.pids, tc.array, got, tc.want)
			}
		})
	}
}

func TestClaimsPerTask(t *testing.T) {
	c := func(ids ...string) []Claimed {
		var cs []Claimed
		for _, id := range ids {
			cs = append(cs, Claimed{ID: id})
		}
		return cs
	}
	for _, tc := range []struct {
		name       string
		claimed    []Claimed
		n, perTask int
		want       [][]Claimed
	}{
		{"no GPUs", nil, 2, 0, [][]Claimed{nil, nil}},
		{"one task", c("a", "b"), 1, 2, [][]Claimed{c("a", "b")}},
		{"in order", c("a", "b", "c", "d", "e", "f"), 3, 2, [][]Claimed{c("a", "b"), c("c", "d"), c("e", "f")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := claimsPerTask(tc.claimed, tc.n, tc.perTask); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("claimsPerTask = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSubmissionRecord(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sub := submission{
		script: "/s/job.sbatch", cwd: "/w", cluster: "c1", user: "ann", host: "h1", now: now,
		d: directives{JobName: "sray-c1-worker", Output: "/logs/%x-%u@%N-%A_%a-%j.log"},
	}
	p := Proc{PID: 57, Start: 99}
	for _, tc := range []struct {
		name string
		task taskName
		gpus []string
		want jobRecord
	}{
		{"plain job", taskName{Key: "57"}, []string{"GPU-a"}, jobRecord{
			Key: "57", GPUs: []string{"GPU-a"}, Log: "/logs/sray-c1-worker-ann@h1-57_-57.log",
		}},
		{"array task", taskName{Key: "41_1", ArrayJobID: "41", ArrayTaskID: "1"}, nil, jobRecord{
			Key: "41_1", ArrayJobID: "41", ArrayTaskID: "1", Log: "/logs/sray-c1-worker-ann@h1-41_1-57.log",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			want.SchemaVersion, want.Proc, want.Name, want.User = cluster.SchemaVersion, p, "sray-c1-worker", "ann"
			want.Script, want.Submitted = "/s/job.sbatch", now
			if got := sub.record(tc.task, p, tc.gpus); !reflect.DeepEqual(got, want) {
				t.Errorf("record:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestClaimGPUs(t *testing.T) {
	claims := &Claims{Base: t.TempDir() + "/claims", Inventory: fakeInventory(4, nil)}
	me, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	h := HolderFor(me, "c1", "submitting")
	for _, tc := range []struct {
		name    string
		claims  *Claims
		d       directives
		want    int
		wantErr error
	}{
		{"CPU-only needs no claims", nil, directives{}, 0, nil},
		{"GPUs without claims", nil, directives{GPUs: 1}, 0, errors.New("submit: the local backend has no GPU claims")},
		{"per task of an array", claims, directives{GPUs: 2, Tasks: 2}, 4, nil},
		{"more than the host has", claims, directives{GPUs: 3, Tasks: 2}, 0, ErrNoGPU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{Claims: tc.claims})
			got, err := s.claimGPUs(tc.d, h)
			switch {
			case tc.wantErr == nil && err != nil, tc.wantErr != nil && err == nil:
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr) && err.Error() != tc.wantErr.Error():
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(got) != tc.want {
				t.Errorf("claimed %d GPUs, want %d", len(got), tc.want)
			}
			removeAll(got)
		})
	}
}
