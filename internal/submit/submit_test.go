package submit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// arrayLimited is a scheduler that refuses arrays of more than limit tasks,
// as SLURM does above MaxArraySize, and counts its calls.
type arrayLimited struct {
	limit      int
	submits    []int // array sizes accepted
	refused    int
	limitAsked int
	nextID     int
}

var arrayLine = regexp.MustCompile(`#SBATCH --array=0-(\d+)`)

func (a *arrayLimited) Submit(ctx context.Context, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	size := 1
	if m := arrayLine.FindSubmatch(b); m != nil {
		last, _ := strconv.Atoi(string(m[1]))
		size = last + 1
	}
	if size > a.limit {
		a.refused++
		return "", fmt.Errorf("submit %s: %w: sbatch failed: Invalid job array specification", path, scheduler.ErrArrayTooLarge)
	}
	a.submits = append(a.submits, size)
	a.nextID++
	return strconv.Itoa(a.nextID), nil
}
func (a *arrayLimited) MaxArrayTasks(ctx context.Context) (int, error) {
	a.limitAsked++
	return a.limit, nil
}
func (a *arrayLimited) Jobs(ctx context.Context, q scheduler.Query) ([]scheduler.Job, error) {
	return nil, nil
}
func (a *arrayLimited) Cancel(ctx context.Context, ids []string, o scheduler.CancelOptions) error {
	return nil
}
func (a *arrayLimited) Ping(ctx context.Context) error                         { return nil }
func (a *arrayLimited) NodeAddr(ctx context.Context, n string) (string, error) { return "", nil }
func (a *arrayLimited) FreeGPUs(ctx context.Context, p string) ([]scheduler.NodeGPUs, error) {
	return nil, nil
}
func (a *arrayLimited) MaxTime(ctx context.Context, p string) (time.Duration, bool, error) {
	return 0, true, nil
}

func testCluster(t *testing.T) (cluster.Dir, cluster.Spec) {
	t.Helper()
	root := t.TempDir()
	spec := cluster.Spec{Name: "big", ID: "id", LogDir: filepath.Join(root, "logs"), Node: cluster.NodeSpec{GPUs: 1}}
	dir, err := cluster.Store{Root: filepath.Join(root, "clusters")}.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	return dir, spec
}

// Within the limit, n workers are one sbatch call and no limit is asked.
func TestWorkersOneCall(t *testing.T) {
	t.Parallel()
	dir, spec := testCluster(t)
	a := &arrayLimited{limit: 1001}
	keys, err := Workers(context.Background(), a, dir, spec, Request{Type: spec.DefaultType(), Head: "6", Count: 1000})
	if err != nil || len(keys) != 1000 || !slices.Equal(a.submits, []int{1000}) || a.limitAsked != 0 {
		t.Errorf("keys %d, %v; submits %v, limit asked %d", len(keys), err, a.submits, a.limitAsked)
	}
}

// Above SLURM's limit, the refused array is split into arrays of at most
// the limit, and every worker is recorded.
func TestWorkersSplitAboveTheLimit(t *testing.T) {
	t.Parallel()
	dir, spec := testCluster(t)
	a := &arrayLimited{limit: 300}
	keys, err := Workers(context.Background(), a, dir, spec, Request{Type: spec.DefaultType(), Head: "6", Count: 1000})
	if err != nil || len(keys) != 1000 || !slices.Equal(a.submits, []int{300, 300, 300, 100}) || a.refused != 1 {
		t.Fatalf("keys %d, %v; submits %v, refused %d", len(keys), err, a.submits, a.refused)
	}
	subs, _ := dir.Submissions()
	total := 0
	for _, s := range subs {
		total += len(s.JobKeys())
	}
	if total != 1000 {
		t.Errorf("%d workers recorded, want 1000", total)
	}
	if got := ArrayChunks(7, 3); !slices.Equal(got, []int{3, 3, 1}) {
		t.Errorf("ArrayChunks(7, 3) = %v", got)
	}
}

// A cluster that rolls over outlives its head: a worker's time is the
// spec's (SLURM caps it at the partition's MaxTime), not the head's time left.
func TestWorkerTimeLimitWithRollover(t *testing.T) {
	t.Parallel()
	head := scheduler.Job{ID: "41", State: scheduler.Running, TimeLeft: 10 * time.Minute, TimeLimit: 2 * time.Hour}
	spec := cluster.Spec{Node: cluster.NodeSpec{Time: "2:00:00"}}
	if got, err := WorkerTimeLimit(spec, head); err != nil || got != "0-00:10:00" {
		t.Fatalf("without rollover: %q, %v; want the head's time left", got, err)
	}
	spec.Rollover = &cluster.RolloverSpec{BeforeS: 240}
	if got, err := WorkerTimeLimit(spec, head); err != nil || got != "2:00:00" {
		t.Errorf("with rollover: %q, %v; want the spec's 2:00:00", got, err)
	}
	head.State = scheduler.Failed
	if _, err := WorkerTimeLimit(spec, head); err == nil {
		t.Error("with rollover, an ended head still refuses")
	}
}
