package local

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// claimer is a helper process holding (or having failed to get) one GPU.
type claimer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	got   string // the GPU's ID, or "ERR <message>"
}

func startClaimer(t *testing.T, dir string, gpus int, clusterName string) *claimer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "claim", dir, strconv.Itoa(gpus), clusterName)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &claimer{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("claimer printed nothing: %v", err)
	}
	c.got = strings.TrimSpace(line)
	return c
}

func TestClaimsConcurrentProcessesGetDistinctGPUs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "claims")
	const procs, gpus = 10, 8
	claimers := make([]*claimer, procs)
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			claimers[i] = startClaimer(t, dir, gpus, "c"+strconv.Itoa(i))
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	var refused []string
	for i, c := range claimers {
		if strings.HasPrefix(c.got, "ERR ") {
			refused = append(refused, c.got)
			continue
		}
		if prev, dup := seen[c.got]; dup {
			t.Errorf("claimers %d and %d both got %s", prev, i, c.got)
		}
		seen[c.got] = i
	}
	if len(seen) != gpus || len(refused) != procs-gpus {
		t.Fatalf("%d GPUs claimed, %d refused; want %d and %d: %v", len(seen), len(refused), gpus, procs-gpus, refused)
	}
	for _, msg := range refused {
		if !strings.Contains(msg, "GPU 0 held by pid") || !strings.Contains(msg, "GPU 7 held by pid") {
			t.Errorf("refusal does not name the GPUs and holders: %s", msg)
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("claims dir mode %v, want sticky and world-writable", st.Mode())
	}
}

func TestClaimOfKilledProcessIsReclaimed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "claims")
	c := startClaimer(t, dir, 1, "gone")
	if c.got != "GPU-fake-0" {
		t.Fatalf("claimer got %q", c.got)
	}
	claims := &Claims{Dir: dir, Inventory: fakeInventory(1, nil)}
	me, _ := Self()
	if _, err := claims.Acquire(1, HolderFor(me, "mine", "1")); !errors.Is(err, ErrNoGPU) {
		t.Fatalf("GPU held by a live claimer was handed out again: %v", err)
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	got, err := claims.Acquire(1, HolderFor(me, "mine", "1"))
	if err != nil || len(got) != 1 || got[0].ID != "GPU-fake-0" {
		t.Fatalf("claim of a SIGKILLed process not reclaimed: %v %v", got, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.claim"))
	if len(files) != 1 {
		t.Errorf("want exactly the new claim file, got %v", files)
	}
	h, err := readClaim(got[0].Path)
	if err != nil || h.Proc != me || h.Cluster != "mine" {
		t.Errorf("claim file names %+v (%v), want this process", h, err)
	}
}

func TestClaimOfRecycledPidIsNotMistaken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "claims")
	claims := &Claims{Dir: dir, Inventory: fakeInventory(1, nil)}
	me, _ := Self()
	if err := claims.ensureDir(); err != nil {
		t.Fatal(err)
	}
	// A claim naming this pid but another start time: the process that made
	// it is gone and its pid was given to this one.
	stale := HolderFor(Proc{PID: me.PID, Start: me.Start - 1}, "old", "9")
	path := filepath.Join(dir, "gpu-GPU-fake-0."+strconv.Itoa(os.Getuid())+".claim")
	if err := createClaim(path, stale); err != nil {
		t.Fatal(err)
	}
	gpus, err := claims.State()
	if err != nil || len(gpus) != 1 || !gpus[0].Free() {
		t.Fatalf("a recycled pid's claim counts as live: %+v %v", gpus, err)
	}
	got, err := claims.Acquire(1, HolderFor(me, "new", "10"))
	if err != nil || len(got) != 1 {
		t.Fatalf("acquire over a recycled pid's claim: %v", err)
	}
	// The same pid with the right start time is a live claim.
	if _, err := claims.Acquire(1, HolderFor(me, "other", "11")); !errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), "cluster new") {
		t.Fatalf("live claim not respected: %v", err)
	}
}

func TestClaimsNoGPULeftNamesGPUsAndHolders(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "claims")
	me, _ := Self()
	claims := &Claims{Dir: dir, Inventory: fakeInventory(3, map[int][]int{2: {4242}})}
	if _, err := claims.Acquire(1, HolderFor(me, "exp1", "100")); err != nil {
		t.Fatal(err)
	}
	if _, err := claims.Acquire(1, HolderFor(me, "exp2", "200")); err != nil {
		t.Fatal(err)
	}
	_, err := claims.Acquire(1, HolderFor(me, "exp3", "300"))
	if !errors.Is(err, ErrNoGPU) {
		t.Fatalf("want ErrNoGPU, got %v", err)
	}
	pid := strconv.Itoa(me.PID)
	for _, want := range []string{
		"GPU 0 held by pid " + pid, "cluster exp1, job 100",
		"GPU 1 held by pid " + pid, "cluster exp2, job 200",
		"GPU 2 busy with processes not started by sraybatch (pid 4242)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %s", want, err)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message is not one line: %q", err)
	}

	none := &Claims{Dir: dir, Inventory: fakeInventory(0, nil)}
	if _, err := none.Acquire(1, HolderFor(me, "x", "1")); err == nil || !strings.Contains(err.Error(), "--gpus-per-node 0") {
		t.Errorf("no-GPU host: %v, want a hint to --gpus-per-node 0", err)
	}
}

func TestClaimsHandAndRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "claims")
	claims := &Claims{Dir: dir, Inventory: fakeInventory(2, nil)}
	me, _ := Self()
	got, err := claims.Acquire(2, HolderFor(me, "c", "submitting"))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].ID != "GPU-fake-0" || got[1].ID != "GPU-fake-1" {
		t.Errorf("want GPU 0 first: %+v", got)
	}
	// Handed to a process that is not alive: the GPUs are free again.
	sleeper := exec.Command("true")
	sleeper.Run()
	dead := Proc{PID: sleeper.Process.Pid, Start: 1}
	if err := claims.Hand(got[:1], HolderFor(dead, "c", "5")); err != nil {
		t.Fatal(err)
	}
	gpus, _ := claims.State()
	if !gpus[0].Free() || gpus[1].Free() {
		t.Errorf("after handing GPU 0 to a dead process: %+v", gpus)
	}
	claims.Release(got[1:], me)
	if gpus, _ := claims.State(); !gpus[1].Free() {
		t.Errorf("released GPU still held: %+v", gpus[1])
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if files, _ := filepath.Glob(filepath.Join(dir, "*.claim")); len(files) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.claim"))
	t.Errorf("claim files left: %v", files)
}
