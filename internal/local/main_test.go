package local

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/sraybatch/sraybatch/internal/gpu"
)

// Helpers are this test binary re-executed as another process (the pattern
// of os/exec's tests): os.Args[1] names the helper.
var helpers = map[string]func(args []string) int{
	// local-job is a job's process, as `sraybatch local-job` is.
	"local-job": func([]string) int { return RunJob(os.Stdin) },
	// claim DIR GPUS CLUSTER claims one of GPUS fake GPUs, prints its ID (or
	// "ERR <message>"), and holds it until its stdin closes.
	"claim": func(args []string) int {
		n, _ := strconv.Atoi(args[1])
		c := &Claims{Base: args[0], Inventory: fakeInventory(n, nil)}
		me, err := Self()
		if err != nil {
			fmt.Println("ERR", err)
			return 1
		}
		got, err := c.Acquire(1, HolderFor(me, args[2], strconv.Itoa(me.PID)))
		if err != nil {
			fmt.Println("ERR", err)
		} else {
			fmt.Println(got[0].ID)
		}
		io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		return 0
	},
}

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		if h, ok := helpers[os.Args[1]]; ok {
			os.Exit(h(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// fakeInventory lists n GPUs, GPU-fake-0 .. GPU-fake-(n-1); busy maps an
// index to the pids of compute processes on it.
func fakeInventory(n int, busy map[int][]int) func() (gpu.Inventory, error) {
	return func() (gpu.Inventory, error) {
		inv := gpu.Inventory{Source: "NVML", GPUs: []gpu.Info{}}
		for i := 0; i < n; i++ {
			g := gpu.Info{ID: fmt.Sprintf("GPU-fake-%d", i), UUID: fmt.Sprintf("GPU-fake-%d", i), Index: new(i), Processes: []gpu.Process{}}
			for _, pid := range busy[i] {
				g.Processes = append(g.Processes, gpu.Process{PID: pid})
			}
			inv.GPUs = append(inv.GPUs, g)
		}
		return inv, nil
	}
}
