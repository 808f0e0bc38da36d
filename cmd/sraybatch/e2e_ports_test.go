//go:build e2e

package main

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sraybatch/sraybatch/raynode"
)

// Tests choose ports the way the product does (raynode.AllocatePorts): a
// block found free at run time, below Linux's ephemeral range. A fixed block
// is never safe: anything on the host may hold it, and inside the ephemeral
// range (32768-60999 here) any outgoing connection may be given one of its
// ports at any moment.

var (
	portBlocksMu sync.Mutex
	portBlocks   [][2]int // blocks handed out by this test binary
)

// freePortBlock returns n consecutive ports [lo, hi] that are free now (each
// one binds) and lie in raynode.DefaultPortRange below the ephemeral range
// read from /proc/sys/net/ipv4/ip_local_port_range. Blocks handed out by this
// process never overlap, so callers in parallel (two Ray nodes started at
// once) cannot take the same one before either binds it. A port taken
// between this check and its use is a lost race: call again for a new block.
func freePortBlock(t testing.TB, n int) (lo, hi int) {
	t.Helper()
	r := belowEphemeral(t)
	if r.Hi-r.Lo+1 < n {
		t.Fatalf("need %d ports, but only %s lies below the ephemeral range", n, r)
	}
	portBlocksMu.Lock()
	defer portBlocksMu.Unlock()
	handedOut := func(lo, hi int) bool {
		for _, b := range portBlocks {
			if lo <= b[1] && b[0] <= hi {
				return true
			}
		}
		return false
	}
	// Random aligned blocks, as the product picks them; every block is tried
	// once, so a block that frees up meanwhile is all a retry could add.
	for _, b := range rand.Perm((r.Hi - r.Lo + 1) / n) {
		lo, hi = r.Lo+b*n, r.Lo+b*n+n-1
		if handedOut(lo, hi) {
			continue
		}
		free := true
		for p := lo; p <= hi && free; p++ {
			free = raynode.PortFree(p)
		}
		if free {
			portBlocks = append(portBlocks, [2]int{lo, hi})
			return lo, hi
		}
	}
	t.Fatalf("no block of %d free ports in %s", n, r)
	return 0, 0
}

// belowEphemeral is raynode.DefaultPortRange cut at the ephemeral range's
// lower bound (raynode.DefaultPortRange already assumes 32768).
func belowEphemeral(t testing.TB) raynode.PortRange {
	t.Helper()
	r := raynode.DefaultPortRange
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatalf("reading the ephemeral port range: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("ip_local_port_range: %q", b)
	}
	eph, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("ip_local_port_range: %q", b)
	}
	r.Hi = min(r.Hi, eph-1)
	return r
}
