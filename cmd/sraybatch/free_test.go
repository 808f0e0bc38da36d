package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// sinfoFree is the sinfo call FreeGPUs makes, answered by a partition with
// one busy, one half-used, one drained and one idle node.
func (f *uFixture) expectSinfoFree(partition string) {
	argv := []string{"sinfo", "-h", "-N", "-O", "NodeList:0|,Partition:0|,StateLong:0|,Gres:0|,GresUsed:0"}
	if partition != "" {
		argv = append(argv, "-p", partition)
	}
	f.stub.Register(argv, "n1|gpu*|allocated|gpu:a100:4|gpu:a100:4(IDX:0-3)\n"+
		"n2|gpu*|mixed|gpu:a100:4|gpu:a100:1(IDX:0)\n"+
		"n3|gpu*|drained|gpu:a100:4|gpu:a100:0\n"+
		"n4|gpu*|idle|gpu:a100:4|gpu:a100:0\n", nil)
}

func TestFreeFormats(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	f.expectSinfoFree("gpu")
	f.expectSinfoFree("gpu")
	var out bytes.Buffer
	io := IOStreams{Out: &out, ErrOut: &bytes.Buffer{}}
	if err := runFree(context.Background(), io, f.app, freeOptions{Partition: "gpu", Output: "json"}); err != nil {
		t.Fatal(err)
	}
	var rows []freeNode
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"n1": 0, "n2": 3, "n3": 0, "n4": 4}
	for _, r := range rows {
		if want[r.Node] != r.Free {
			t.Errorf("%s: %d free, want %d", r.Node, r.Free, want[r.Node])
		}
	}
	out.Reset()
	if err := runFree(context.Background(), io, f.app, freeOptions{Partition: "gpu"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || lines[0] != "PARTITION\tNODE\tSTATE\tGPUS\tUSED\tFREE" || lines[2] != "gpu\tn2\tmixed\t4\t1\t3" {
		t.Errorf("TSV:\n%s", out.String())
	}
}

func TestGrowFillCountsWorkerSlots(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := cluster.Spec{Node: cluster.NodeSpec{GPUs: 2, Partition: "gpu"}}
	f.expectSinfoFree("gpu")
	if n, err := f.app.fillCount(context.Background(), spec, spec.WorkerNode(), 0); err != nil || n != 3 {
		t.Errorf("fill with 2-GPU workers: %d, %v; want 3 (n2 fits 1, n4 fits 2)", n, err)
	}
	f.expectSinfoFree("gpu")
	if n, err := f.app.fillCount(context.Background(), spec, spec.WorkerNode(), 2); err != nil || n != 2 {
		t.Errorf("fill --max 2: %d, %v", n, err)
	}
	spec.Node.GPUs = 8
	f.expectSinfoFree("gpu")
	if _, err := f.app.fillCount(context.Background(), spec, spec.WorkerNode(), 0); err == nil || !strings.Contains(err.Error(), "8 free GPUs") {
		t.Errorf("no node with 8 free GPUs: %v", err)
	}
}

// A node in two partitions has a row in each, but the styled total counts
// its free GPUs once.
func TestFreeTotalCountsEachNodeOnce(t *testing.T) {
	t.Parallel()
	rows := freeRows([]scheduler.NodeGPUs{
		{Node: "n1", Partition: "debug", State: "idle", Total: 2},
		{Node: "n1", Partition: "scav", State: "idle", Total: 2},
		{Node: "n2", Partition: "debug", State: "mixed", Total: 2, Used: 1},
	})
	var out bytes.Buffer
	printFree(&out, rows, true)
	footer := out.String()[strings.LastIndex(out.String(), "FREE"):]
	if f := strings.Fields(strings.ReplaceAll(footer, "│", " ")); len(f) < 2 || f[1] != "3" {
		t.Errorf("total free, want 3 (n1's 2 once, n2's 1):\n%s", out.String())
	}
	if once := scheduler.EachNodeOnce([]scheduler.NodeGPUs{{Node: "a", Partition: "x"}, {Node: "b"}, {Node: "a", Partition: "y"}}); len(once) != 2 || once[0].Partition != "x" || once[1].Node != "b" {
		t.Errorf("EachNodeOnce = %+v, want a (first row) then b", once)
	}
}
