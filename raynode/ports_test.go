package raynode

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/testci"
)

func allFree(int) bool { return true }

// checkPorts asserts the invariants of every plan: inside the range,
// distinct, enough worker ports, and every one of them free.
func checkPorts(t *testing.T, p Ports, r PortRange, free func(int) bool) {
	t.Helper()
	all := p.All()
	seen := map[int]bool{}
	for _, port := range all {
		if port < r.Lo || port > r.Hi {
			t.Errorf("port %d outside %s", port, r)
		}
		if seen[port] {
			t.Errorf("port %d given twice in %+v", port, p)
		}
		seen[port] = true
		if !free(port) {
			t.Errorf("port %d is busy", port)
		}
	}
	if n := p.MaxWorker - p.MinWorker + 1; n < minWorkerPorts {
		t.Errorf("worker range %d-%d holds %d ports, want >= %d", p.MinWorker, p.MaxWorker, n, minWorkerPorts)
	}
	if len(all) != namedPorts+p.MaxWorker-p.MinWorker+1 {
		t.Errorf("All() lists %d ports for %+v", len(all), p)
	}
}

func TestAllocatePorts(t *testing.T) {
	t.Parallel()
	ranges := []PortRange{DefaultPortRange, {Lo: 40000, Hi: 40027}, {Lo: 40000, Hi: 40100}, {Lo: 65500, Hi: 65535}}
	for _, r := range ranges {
		for range 20 { // blocks are chosen at random
			p, err := AllocatePorts(r, allFree)
			if err != nil {
				t.Fatalf("AllocatePorts(%s): %v", r, err)
			}
			checkPorts(t, p, r, allFree)
		}
	}
}

func TestAllocatePortsSkipsBusyPorts(t *testing.T) {
	t.Parallel()
	r := PortRange{Lo: 30000, Hi: 30000 + 3*maxBlock - 1} // three blocks
	// One busy port in each of the first two blocks: only the third is free.
	busy := map[int]bool{30000 + 40: true, 30000 + maxBlock: true}
	free := func(p int) bool { return !busy[p] }
	for range 20 {
		p, err := AllocatePorts(r, free)
		if err != nil {
			t.Fatal(err)
		}
		checkPorts(t, p, r, free)
		if p.GCS != 30000+2*maxBlock {
			t.Errorf("block starts at %d, want the only free block at %d", p.GCS, 30000+2*maxBlock)
		}
	}
}

func TestAllocatePortsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    PortRange
		free func(int) bool
	}{
		{"full", DefaultPortRange, func(int) bool { return false }},
		{"every block has a busy port", PortRange{Lo: 30000, Hi: 30000 + 2*maxBlock - 1}, func(p int) bool { return (p-30000)%maxBlock != 5 }},
		{"too small", PortRange{Lo: 30000, Hi: 30000 + minBlock - 2}, allFree},
		{"one port", PortRange{Lo: 30000, Hi: 30000}, allFree},
		{"empty", PortRange{Lo: 30000, Hi: 29999}, allFree},
		{"reversed", PortRange{Lo: 30000, Hi: 29000}, allFree},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := AllocatePorts(tt.r, tt.free)
			if err == nil {
				t.Fatalf("AllocatePorts(%s) = %+v, want an error", tt.r, p)
			}
			for _, want := range []string{tt.r.String(), "--port-range"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want PortRange
		ok   bool
	}{
		{"20000-32767", PortRange{20000, 32767}, true},
		{"1024-1051", PortRange{1024, 1051}, true}, // exactly minBlock ports
		{"65508-65535", PortRange{65508, 65535}, true},
		{"1023-2000", PortRange{}, false},
		{"60000-65536", PortRange{}, false},
		{"20000-20026", PortRange{}, false}, // one port short
		{"20100-20000", PortRange{}, false},
		{"20000", PortRange{}, false},
		{"", PortRange{}, false},
		{"-", PortRange{}, false},
		{"a-b", PortRange{}, false},
		{"20000-", PortRange{}, false},
		{" 20000-21000", PortRange{}, false},
		{"20000-21000-22000", PortRange{}, false},
		{"20000:21000", PortRange{}, false},
	}
	for _, tt := range tests {
		got, err := ParsePortRange(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "invalid --port-range") {
			t.Errorf("ParsePortRange(%q) error %q does not name the flag", tt.in, err)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestPortsParams(t *testing.T) {
	t.Parallel()
	head, worker := map[string]string{}, map[string]string{}
	goldenPorts.Params(true, head)
	goldenPorts.Params(false, worker)
	// Head: all named ports but the two taken from the environment and
	// sraybatch's own scrape port, plus the worker range's two ends; workers
	// lack the six head-only ports.
	if len(head) != namedPorts-3+2 || len(worker) != namedPorts-6+2 {
		t.Errorf("head has %d port params, worker %d: %v / %v", len(head), len(worker), head, worker)
	}
	for k, v := range worker {
		if head[k] != v {
			t.Errorf("--%s: head %q, worker %q", k, head[k], v)
		}
	}
	// Every named port reaches ray start.
	named := map[string]bool{}
	for _, v := range head {
		named[v] = true
	}
	for _, kv := range goldenPorts.Env(true) {
		_, v, _ := strings.Cut(kv, "=")
		named[v] = true
	}
	if goldenPorts.Env(false) != nil {
		t.Errorf("workers get environment ports: %v", goldenPorts.Env(false))
	}
	if named[strconv.Itoa(goldenPorts.Scrape)] {
		t.Errorf("the scrape port %d reaches Ray: it is sraybatch's", goldenPorts.Scrape)
	}
	named[strconv.Itoa(goldenPorts.Scrape)] = true
	for _, p := range goldenPorts.All()[:namedPorts] {
		if !named[strconv.Itoa(p)] {
			t.Errorf("port %d reaches neither ray start nor its environment", p)
		}
	}
}

func TestPortFree(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		testci.SkipOutsideCI(t, "cannot listen: %v", err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if PortFree(port) {
		t.Errorf("PortFree(%d) = true while 127.0.0.1:%d listens", port, port)
	}
}
