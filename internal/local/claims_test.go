package local

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/testci"
)

func init() {
	// claim-in OWN BASE GPUS CLUSTER is claim with its claims in OWN (a
	// directory of this user's next to BASE-<uid>), so claimers share no
	// lock and only the race rule keeps them apart.
	helpers["claim-in"] = func(args []string) int {
		n, _ := strconv.Atoi(args[2])
		return holdClaim(&Claims{Base: args[1], own: args[0], Inventory: fakeInventory(n, nil)}, args[3])
	}
}

// holdClaim claims one GPU, prints its ID (or "ERR <message>") and holds it
// until stdin closes.
func holdClaim(c *Claims, clusterName string) int {
	me, err := Self()
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	got, err := c.Acquire(1, HolderFor(me, clusterName, strconv.Itoa(me.PID)))
	if err != nil {
		fmt.Println("ERR", err)
	} else {
		fmt.Println(got[0].ID)
	}
	io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	return 0
}

// claimer is a helper process holding (or having failed to get) one GPU.
type claimer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	got   string // the GPU's ID, or "ERR <message>"
}

func startClaimer(t *testing.T, dir string, gpus int, clusterName string) *claimer {
	t.Helper()
	return startHelper(t, exec.Command(os.Args[0], "claim", dir, strconv.Itoa(gpus), clusterName))
}

// startHelper starts cmd, a helper that prints one line and then waits for
// its stdin to close, and reads that line.
func startHelper(t *testing.T, cmd *exec.Cmd) *claimer {
	t.Helper()
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
	t.Cleanup(c.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper %v printed nothing: %v", cmd.Args, err)
	}
	c.got = strings.TrimSpace(line)
	return c
}

// stop closes the helper's stdin and waits for it to end.
func (c *claimer) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// ownPath is this user's canonical claims directory under base.
func ownPath(base string) string { return base + "-" + strconv.Itoa(os.Geteuid()) }

// otherDir makes base-<uid>-<suffix>: a good claims directory of this user's
// that is not the one its claims go to, so it stands for another user's.
func otherDir(t *testing.T, base, suffix string) string {
	t.Helper()
	dir := ownPath(base) + "-" + suffix
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// plant writes a claim file for fake GPU i into dir.
func plant(t *testing.T, dir string, i int, f claimFile) string {
	t.Helper()
	path := filepath.Join(dir, "gpu-GPU-fake-"+strconv.Itoa(i)+"."+strconv.Itoa(os.Geteuid())+".claim")
	if err := createClaim(path, f); err != nil {
		t.Fatal(err)
	}
	return path
}

// sleeper starts a process that lives until the test ends and returns it.
func sleeper(t *testing.T) (Proc, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p, err := procOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return p, cmd
}

// laterSleeper is a sleeper started at a later clock tick than this process.
func laterSleeper(t *testing.T) Proc {
	t.Helper()
	me, _ := Self()
	for {
		p, cmd := sleeper(t)
		if p.Start > me.Start {
			return p
		}
		cmd.Process.Kill()
		time.Sleep(20 * time.Millisecond)
	}
}

// deadProc is a process that has ended and been reaped.
func deadProc(t *testing.T) Proc {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, _ := procOf(cmd.Process.Pid)
	cmd.Wait()
	if p.PID == 0 {
		p = Proc{PID: cmd.Process.Pid, Start: 1}
	}
	return p
}

func TestClaimsConcurrentProcessesGetDistinctGPUs(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	const procs, gpus = 10, 8
	claimers := make([]*claimer, procs)
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			claimers[i] = startClaimer(t, base, gpus, "c"+strconv.Itoa(i))
		}()
	}
	wg.Wait()
	checkDistinct(t, claimers, gpus)
	st, err := os.Lstat(ownPath(base))
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsDir() || st.Mode()&(os.ModeSticky|os.ModeSymlink) != 0 || st.Mode().Perm() != 0o755 {
		t.Errorf("claims dir mode %v, want a plain directory, 0755", st.Mode())
	}
}

// TestClaimsConcurrentClaimersWithoutSharedLock races claimers that each
// write to a directory of their own (as different users do): only the
// earliest-holder rule keeps them from taking the same GPU.
func TestClaimsConcurrentClaimersWithoutSharedLock(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	const procs, gpus = 10, 8
	claimers := make([]*claimer, procs)
	dirs := make([]string, procs)
	for i := range dirs {
		dirs[i] = otherDir(t, base, "p"+strconv.Itoa(i))
	}
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			claimers[i] = startHelper(t, exec.Command(os.Args[0], "claim-in", dirs[i], base, strconv.Itoa(gpus), "c"+strconv.Itoa(i)))
		}()
	}
	wg.Wait()
	checkDistinct(t, claimers, gpus)
	// Exactly the winners' claims are left, each settled.
	files, _ := filepath.Glob(ownPath(base) + "-p*/*.claim")
	if len(files) != gpus {
		t.Errorf("claim files %v, want %d", files, gpus)
	}
	for _, f := range files {
		if cf, err := readClaim(f, os.Geteuid()); err != nil || cf.Pending {
			t.Errorf("claim %s: %+v %v, want settled", f, cf, err)
		}
	}
}

func checkDistinct(t *testing.T, claimers []*claimer, gpus int) {
	t.Helper()
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
	if len(seen) != gpus || len(refused) != len(claimers)-gpus {
		t.Fatalf("%d GPUs claimed, %d refused; want %d and %d: %v", len(seen), len(refused), gpus, len(claimers)-gpus, refused)
	}
	for _, msg := range refused {
		if !strings.Contains(msg, "GPU 0 held by pid") || !strings.Contains(msg, "GPU 7 held by pid") {
			t.Errorf("refusal does not name the GPUs and holders: %s", msg)
		}
	}
}

func TestClaimsDirIsPerUserAndReadableByAll(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	claims := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
	me, _ := Self()
	got, err := claims.Acquire(1, HolderFor(me, "c", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(got[0].Path) != ownPath(base) {
		t.Errorf("claim at %s, want it in %s", got[0].Path, ownPath(base))
	}
	st, err := os.Lstat(ownPath(base))
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsDir() || st.Mode()&(os.ModeType|os.ModeSticky|os.ModeSetgid) != os.ModeDir || st.Mode().Perm() != 0o755 {
		t.Errorf("claims dir mode %v, want drwxr-xr-x under umask 077", st.Mode())
	}
	if st, err := os.Lstat(got[0].Path); err != nil || st.Mode() != 0o644 {
		t.Errorf("claim file mode %v (%v), want 0644 under umask 077", st.Mode(), err)
	}
	// Its own dir of mode 0700 (made by hand) is opened up, not left unread.
	os.Chmod(ownPath(base), 0o700)
	if _, err := claims.State(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Lstat(ownPath(base)); st.Mode().Perm() != 0o755 {
		t.Errorf("own claims dir left at %v", st.Mode())
	}
	// The default and the environment name the base, not the directory.
	t.Setenv(ClaimsBaseEnv, "")
	if b := SystemClaims().base(); b != DefaultClaimsBase {
		t.Errorf("default base %q", b)
	}
	t.Setenv(ClaimsBaseEnv, base)
	if b := SystemClaims().base(); b != base {
		t.Errorf("base from %s: %q", ClaimsBaseEnv, b)
	}
}

func TestClaimsFallBackFromBadDirUnderMyName(t *testing.T) {
	me, _ := Self()
	for _, bad := range []struct {
		name string
		make func(t *testing.T, canonical string) (plantIn string)
	}{
		{"symlink", func(t *testing.T, canonical string) string {
			target := filepath.Join(filepath.Dir(canonical), "elsewhere")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(target, 0o755)
			if err := os.Symlink(target, canonical); err != nil {
				t.Fatal(err)
			}
			return target
		}},
		{"world-writable", func(t *testing.T, canonical string) string {
			if err := os.Mkdir(canonical, 0o777); err != nil {
				t.Fatal(err)
			}
			os.Chmod(canonical, 0o777)
			return canonical
		}},
		{"group-writable", func(t *testing.T, canonical string) string {
			if err := os.Mkdir(canonical, 0o775); err != nil {
				t.Fatal(err)
			}
			os.Chmod(canonical, 0o775)
			return canonical
		}},
		{"file", func(t *testing.T, canonical string) string {
			if err := os.WriteFile(canonical, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
	} {
		t.Run(bad.name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "claims")
			canonical := ownPath(base)
			in := bad.make(t, canonical)
			var planted string
			if in != "" {
				// A live claim there on GPU 0 would block it if trusted.
				planted = plant(t, in, 0, claimFile{Holder: HolderFor(me, "squatter", "1")})
			}
			claims := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
			got, err := claims.Acquire(1, HolderFor(me, "mine", "2"))
			if err != nil {
				t.Fatalf("a bad directory under my name blocked my claim: %v", err)
			}
			dir := filepath.Dir(got[0].Path)
			if !regexp.MustCompile(`^` + regexp.QuoteMeta(canonical) + `-[0-9a-f]{16}$`).MatchString(dir) {
				t.Fatalf("claim in %s, want a fallback %s-<random>", dir, canonical)
			}
			if why := checkDir(dir, os.Geteuid()); why != "" {
				t.Errorf("fallback dir %s", why)
			}
			if in != "" {
				if files, _ := filepath.Glob(filepath.Join(in, "*")); len(files) != 1 || files[0] != planted {
					t.Errorf("the bad directory was written to: %v", files)
				}
			}
			// Another of my processes uses the same fallback, sees the claim
			// and makes no second fallback directory.
			again := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
			if _, err := again.Acquire(1, HolderFor(me, "again", "3")); !errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), "cluster mine") {
				t.Errorf("second claimer: %v, want GPU 0 held by cluster mine", err)
			}
			if dirs, _ := filepath.Glob(canonical + "-*"); len(dirs) != 1 {
				t.Errorf("fallback dirs %v, want one", dirs)
			}
		})
	}
}

func TestClaimsIgnoreDirsOwnedByOthersThanTheirUID(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	me, _ := Self()
	// A directory named for another uid but owned by this one: the claims
	// in it are not that uid's, and not this user's either.
	for _, name := range []string{
		base + "-" + strconv.Itoa(os.Geteuid()+1),
		base + "-" + strconv.Itoa(os.Geteuid()+1) + "-x",
		base + "-0" + strconv.Itoa(os.Geteuid()),      // not the canonical spelling
		base + "-" + strconv.Itoa(os.Geteuid()) + "-", // empty suffix
	} {
		if err := os.Mkdir(name, 0o755); err != nil {
			t.Fatal(err)
		}
		plant(t, name, 0, claimFile{Holder: HolderFor(me, "forged", "1")})
	}
	claims := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
	gpus, err := claims.State()
	if err != nil || !gpus[0].Free() {
		t.Fatalf("claims in directories not owned by their uid were honoured: %+v %v", gpus, err)
	}
}

func TestDirUID(t *testing.T) {
	for name, want := range map[string]int{"c-0": 0, "c-1000": 1000, "c-1000-ab12": 1000, "c-7-a-b": 7} {
		if uid, ok := dirUID(name, "c-"); !ok || uid != want {
			t.Errorf("dirUID(%q) = %d %v, want %d", name, uid, ok, want)
		}
	}
	for _, name := range []string{"c", "c-", "c-x", "c-01", "c-+1", "c--1", "c-1-", "d-1", "c-1x"} {
		if uid, ok := dirUID(name, "c-"); ok {
			t.Errorf("dirUID(%q) = %d, want no uid", name, uid)
		}
	}
}

// TestClaimsOfOthersHonouredWhenLiveIgnoredWhenDead: claims in a directory
// that is not this process's (another user's, or one this user left) count
// while their holder lives and are never removed by this user.
func TestClaimsOfOthersHonouredWhenLiveIgnoredWhenDead(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	other := otherDir(t, base, "other")
	live, liveCmd := sleeper(t)
	dead := deadProc(t)
	livePath := plant(t, other, 0, claimFile{Holder: HolderFor(live, "theirs", "1")})
	deadPath := plant(t, other, 1, claimFile{Holder: HolderFor(dead, "gone", "2")})
	claims := &Claims{Base: base, Inventory: fakeInventory(3, nil)}
	gpus, err := claims.State()
	if err != nil {
		t.Fatal(err)
	}
	if gpus[0].Holder == nil || gpus[0].Holder.PID != live.PID || !gpus[1].Free() || !gpus[2].Free() {
		t.Fatalf("state %+v: want GPU 0 held by pid %d, GPU 1 and 2 free", gpus, live.PID)
	}
	me, _ := Self()
	got, err := claims.Acquire(2, HolderFor(me, "mine", "3"))
	if err != nil || got[0].ID != "GPU-fake-1" || got[1].ID != "GPU-fake-2" {
		t.Fatalf("acquire: %+v %v, want GPU 1 (dead claim ignored) and GPU 2", got, err)
	}
	if _, err := claims.Acquire(1, HolderFor(me, "more", "4")); !errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), "GPU 0 held by pid "+strconv.Itoa(live.PID)) {
		t.Fatalf("live claim in another directory not honoured: %v", err)
	}
	liveCmd.Process.Kill()
	liveCmd.Wait()
	claims.Release(got, me)
	got, err = claims.Acquire(1, HolderFor(me, "after", "5"))
	if err != nil || got[0].ID != "GPU-fake-0" {
		t.Fatalf("claim of an ended holder in another directory still counts: %+v %v", got, err)
	}
	for _, p := range []string{livePath, deadPath} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("someone else's dead claim was removed: %v", err)
		}
	}
}

func TestClaimFileSymlinkIgnored(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	me, _ := Self()
	other := otherDir(t, base, "other")
	// A real live claim outside any claims directory, linked into one.
	outside := filepath.Join(t.TempDir(), "real.claim")
	if err := createClaim(outside, claimFile{Holder: HolderFor(me, "linked", "1")}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(outside)
	if err := os.Symlink(outside, filepath.Join(other, "gpu-GPU-fake-0."+strconv.Itoa(os.Geteuid())+".claim")); err != nil {
		t.Fatal(err)
	}
	// A FIFO must neither count nor hang the reader.
	if err := syscall.Mkfifo(filepath.Join(other, "gpu-GPU-fake-1."+strconv.Itoa(os.Geteuid())+".claim"), 0o644); err != nil {
		t.Fatal(err)
	}
	claims := &Claims{Base: base, Inventory: fakeInventory(3, nil)}
	// And a symlink in my own directory, where my next claim on GPU 2 goes.
	own, err := claims.ownDir()
	if err != nil {
		t.Fatal(err)
	}
	mineLink := filepath.Join(own, "gpu-GPU-fake-2."+strconv.Itoa(os.Geteuid())+".claim")
	if err := os.Symlink(outside, mineLink); err != nil {
		t.Fatal(err)
	}
	gpus, err := claims.State()
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range gpus {
		if !g.Free() {
			t.Errorf("GPU %d taken by a claim that is a symlink or a FIFO: %+v", i, g.Holder)
		}
	}
	got, err := claims.Acquire(3, HolderFor(me, "mine", "2"))
	if err != nil {
		t.Fatal(err)
	}
	if got[2].Path != mineLink {
		t.Fatalf("claim on GPU 2 at %s, want %s", got[2].Path, mineLink)
	}
	if st, err := os.Lstat(mineLink); err != nil || !st.Mode().IsRegular() {
		t.Errorf("own claim on GPU 2 is %v (%v), want a regular file in place of the link", st.Mode(), err)
	}
	if after, _ := os.ReadFile(outside); string(after) != string(before) {
		t.Errorf("a symlinked claim's target was written: %s", after)
	}
	// Writing over a symlink never follows it either.
	link := filepath.Join(own, "link.claim")
	os.Symlink(outside, link)
	if err := createClaim(link, claimFile{Holder: HolderFor(me, "x", "3")}); !errors.Is(err, os.ErrExist) {
		t.Errorf("create over a symlink: %v, want it to exist", err)
	}
	if after, _ := os.ReadFile(outside); string(after) != string(before) {
		t.Errorf("creating a claim wrote through a symlink: %s", after)
	}
}

// race is a race for fake GPU 0: my claim (in own) against a rival's,
// planted in another directory.
type race struct {
	claims *Claims
	own    string
	gpu    GPU
	rival  string // the rival's claim file
}

func newRace(t *testing.T, rival claimFile) *race {
	t.Helper()
	base := filepath.Join(t.TempDir(), "claims")
	claims := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
	own, err := claims.ownDir()
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := claims.State()
	if err != nil {
		t.Fatal(err)
	}
	return &race{claims: claims, own: own, gpu: gpus[0], rival: plant(t, otherDir(t, base, "rival"), 0, rival)}
}

func (r *race) take(t *testing.T, h Holder) bool {
	t.Helper()
	var won bool
	err := lockDir(r.own, func() error {
		var err error
		_, won, err = r.claims.take(r.own, r.gpu, h)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(r.own, "gpu-GPU-fake-0."+strconv.Itoa(os.Geteuid())+".claim")
	f, err := readClaim(mine, os.Geteuid())
	switch {
	case won && (err != nil || f.Pending || f.Proc != h.Proc):
		t.Errorf("won, but my claim is %+v (%v), want settled", f, err)
	case !won && !errors.Is(err, os.ErrNotExist):
		t.Errorf("lost, but my claim is still there: %+v %v", f, err)
	}
	return won
}

func TestClaimsRaceEarliestHolderWins(t *testing.T) {
	defer func(w time.Duration) { settleWait = w }(settleWait)
	settleWait = 2 * time.Second
	early, _ := Self()
	late := laterSleeper(t)

	t.Run("pending rival started earlier", func(t *testing.T) {
		r := newRace(t, claimFile{Holder: HolderFor(early, "rival", "1"), Pending: true})
		if r.take(t, HolderFor(late, "me", "2")) {
			t.Error("the later holder won over an earlier pending rival")
		}
		if _, err := os.Lstat(r.rival); err != nil {
			t.Errorf("rival's claim touched: %v", err)
		}
	})
	t.Run("pending rival started later backs off", func(t *testing.T) {
		r := newRace(t, claimFile{Holder: HolderFor(late, "rival", "1"), Pending: true})
		go func() { time.Sleep(100 * time.Millisecond); os.Remove(r.rival) }()
		start := time.Now()
		if !r.take(t, HolderFor(early, "me", "2")) {
			t.Error("the earliest holder lost after its later rival backed off")
		}
		if time.Since(start) < 100*time.Millisecond {
			t.Error("won without waiting for the later rival to back off")
		}
	})
	t.Run("pending rival started later commits first", func(t *testing.T) {
		r := newRace(t, claimFile{Holder: HolderFor(late, "rival", "1"), Pending: true})
		go func() {
			time.Sleep(100 * time.Millisecond)
			writeClaim(r.rival, claimFile{Holder: HolderFor(late, "rival", "1")})
		}()
		if r.take(t, HolderFor(early, "me", "2")) {
			t.Error("won over a rival that committed first")
		}
	})
	t.Run("settled claim of a later holder is never taken over", func(t *testing.T) {
		r := newRace(t, claimFile{Holder: HolderFor(late, "rival", "1")})
		start := time.Now()
		if r.take(t, HolderFor(early, "me", "2")) {
			t.Error("an earlier holder took over a settled claim")
		}
		if time.Since(start) > settleWait/2 {
			t.Error("waited for a settled claim instead of backing off at once")
		}
	})
	t.Run("pending rival that never settles", func(t *testing.T) {
		settleWait = 200 * time.Millisecond
		defer func() { settleWait = 2 * time.Second }()
		r := newRace(t, claimFile{Holder: HolderFor(late, "rival", "1"), Pending: true})
		if r.take(t, HolderFor(early, "me", "2")) {
			t.Error("won while a rival was still pending")
		}
	})
	t.Run("dead rival", func(t *testing.T) {
		r := newRace(t, claimFile{Holder: HolderFor(deadProc(t), "rival", "1"), Pending: true})
		if !r.take(t, HolderFor(late, "me", "2")) {
			t.Error("lost to a dead rival")
		}
		if _, err := os.Lstat(r.rival); err != nil {
			t.Errorf("someone else's dead claim was removed: %v", err)
		}
	})
}

func TestClaimOrder(t *testing.T) {
	c := func(start uint64, uid, pid int, path string) claim {
		return claim{claimFile: claimFile{Holder: Holder{Proc: Proc{PID: pid, Start: start}}}, uid: uid, path: path}
	}
	for _, o := range []struct{ a, b claim }{
		{c(1, 9, 9, "z"), c(2, 0, 0, "a")}, // start time first
		{c(5, 1, 9, "z"), c(5, 2, 0, "a")}, // then uid
		{c(5, 1, 3, "z"), c(5, 1, 4, "a")}, // then pid
		{c(5, 1, 3, "a"), c(5, 1, 3, "b")}, // then path: a total order
	} {
		if !o.a.before(o.b) || o.b.before(o.a) {
			t.Errorf("want %+v before %+v", o.a, o.b)
		}
	}
}

func TestClaimOfKilledProcessIsReclaimed(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	c := startClaimer(t, base, 1, "gone")
	if c.got != "GPU-fake-0" {
		t.Fatalf("claimer got %q", c.got)
	}
	claims := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
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
	files, _ := filepath.Glob(filepath.Join(ownPath(base), "*.claim"))
	if len(files) != 1 {
		t.Errorf("want exactly the new claim file, got %v", files)
	}
	h, err := readClaim(got[0].Path, os.Geteuid())
	if err != nil || h.Proc != me || h.Cluster != "mine" || h.Pending {
		t.Errorf("claim file names %+v (%v), want this process", h, err)
	}
}

func TestClaimOfRecycledPidIsNotMistaken(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	claims := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
	me, _ := Self()
	own, err := claims.ownDir()
	if err != nil {
		t.Fatal(err)
	}
	// A claim naming this pid but another start time: the process that made
	// it is gone and its pid was given to this one.
	stale := HolderFor(Proc{PID: me.PID, Start: me.Start - 1}, "old", "9")
	plant(t, own, 0, claimFile{Holder: stale})
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
	base := filepath.Join(t.TempDir(), "claims")
	me, _ := Self()
	claims := &Claims{Base: base, Inventory: fakeInventory(3, map[int][]int{2: {4242}})}
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

	none := &Claims{Base: base, Inventory: fakeInventory(0, nil)}
	if _, err := none.Acquire(1, HolderFor(me, "x", "1")); err == nil || !strings.Contains(err.Error(), "--gpus-per-node 0") {
		t.Errorf("no-GPU host: %v, want a hint to --gpus-per-node 0", err)
	}
}

func TestClaimsHandAndRelease(t *testing.T) {
	base := filepath.Join(t.TempDir(), "claims")
	claims := &Claims{Base: base, Inventory: fakeInventory(2, nil)}
	me, _ := Self()
	got, err := claims.Acquire(2, HolderFor(me, "c", "submitting"))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].ID != "GPU-fake-0" || got[1].ID != "GPU-fake-1" {
		t.Errorf("want GPU 0 first: %+v", got)
	}
	// Handed to a process that is not alive: the GPUs are free again.
	if err := claims.Hand(got[:1], HolderFor(deadProc(t), "c", "5")); err != nil {
		t.Fatal(err)
	}
	gpus, _ := claims.State()
	if !gpus[0].Free() || gpus[1].Free() {
		t.Errorf("after handing GPU 0 to a dead process: %+v", gpus)
	}
	// Release by a process that no longer holds it leaves it alone.
	claims.Release(got[1:], deadProc(t))
	if gpus, _ := claims.State(); gpus[1].Free() {
		t.Errorf("released by a non-holder: %+v", gpus[1])
	}
	// A job's process releases with only the base path recorded.
	(&Claims{Base: base}).Release(got[1:], me)
	if gpus, _ := claims.State(); !gpus[1].Free() {
		t.Errorf("released GPU still held: %+v", gpus[1])
	}
	left := func() []string {
		files, _ := filepath.Glob(filepath.Join(ownPath(base), "*.claim"))
		tmp, _ := filepath.Glob(filepath.Join(ownPath(base), ".*.tmp"))
		return append(files, tmp...)
	}
	if !testci.Poll(time.Second, 50*time.Millisecond, func() bool { return len(left()) == 0 }) {
		t.Errorf("files left: %v", left())
	}
}
