//go:build e2e

package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sraybatch/sraybatch/internal/testci"
)

// otherUser is the unprivileged user the cross-user tests run helpers as.
const otherUser = "srbclaims2"

func init() {
	// tamper PATH tries, as another user, every way to remove or replace
	// the claim file at PATH, and prints what each attempt got (JSON).
	helpers["tamper"] = func(args []string) int {
		path, dir := args[0], filepath.Dir(args[0])
		errno := func(err error) string {
			var e syscall.Errno
			if errors.As(err, &e) {
				return e.Error()
			}
			if err == nil {
				return "ok"
			}
			return err.Error()
		}
		got := map[string]string{}
		got["remove"] = errno(os.Remove(path))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			f.Close()
		}
		got["overwrite"] = errno(err)
		mine := filepath.Join(filepath.Dir(dir), "tamper-"+strconv.Itoa(os.Getpid()))
		os.WriteFile(mine, []byte(`{"pid":1}`), 0o644)
		got["rename over"] = errno(os.Rename(mine, path))
		os.Remove(mine)
		got["create in dir"] = errno(os.WriteFile(filepath.Join(dir, "gpu-GPU-fake-1."+strconv.Itoa(os.Geteuid())+".claim"), []byte(`{"pid":1}`), 0o644))
		got["rename dir"] = errno(os.Rename(dir, dir+"-moved"))
		got["chmod dir"] = errno(os.Chmod(dir, 0o777))
		b, _ := json.Marshal(got)
		fmt.Println(string(b))
		return 0
	}
	// squat DIR LINK PID START makes, as another user, the directory DIR
	// (mode 0755, as a claims directory of theirs would be) with a claim on
	// fake GPU 0 naming the live process PID/START; and, when LINK is not
	// "-", a symlink LINK to DIR.
	helpers["squat"] = func(args []string) int {
		dir, link := args[0], args[1]
		pid, _ := strconv.Atoi(args[2])
		start, _ := strconv.ParseUint(args[3], 10, 64)
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err == nil {
			err = createClaim(filepath.Join(dir, "gpu-GPU-fake-0.0.claim"), claimFile{Holder: HolderFor(Proc{PID: pid, Start: start}, "squatter", "1")})
		}
		if err == nil && link != "-" {
			err = os.Symlink(dir, link)
		}
		if err != nil {
			fmt.Println("ERR", err)
			return 1
		}
		fmt.Println("ok")
		return 0
	}
}

// asOtherUser prepares the cross-user tests: they need root (to run helpers
// as a second, unprivileged user, created when missing) and skip without it,
// except under CI=true, where they fail. It returns a copy of this test
// binary that user can run, and a fresh sticky world-writable directory
// (like /tmp) to put the claims in.
func asOtherUser(t *testing.T) (bin, tmp string) {
	t.Helper()
	need := func(format string, args ...any) {
		t.Helper()
		testci.SkipOutsideCI(t, format, args...)
	}
	if os.Geteuid() != 0 {
		need("cross-user claims test needs root, to run helpers as user %s", otherUser)
	}
	if _, err := exec.Command("id", "-u", otherUser).Output(); err != nil {
		if out, err := exec.Command("useradd", "-M", "-r", "-s", "/usr/sbin/nologin", otherUser).CombinedOutput(); err != nil {
			need("cannot create user %s: %v: %s", otherUser, err, out)
		}
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		need("cross-user claims test needs runuser: %v", err)
	}
	// Under /tmp when it is there: $TMPDIR may be private to root.
	parent := ""
	if st, err := os.Lstat("/tmp"); err == nil && st.IsDir() && st.Mode()&os.ModeSticky != 0 && st.Mode().Perm() == 0o777 {
		parent = "/tmp"
	}
	root, err := os.MkdirTemp(parent, "sraybatch-claims-users-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(root, "local.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(bin, 0o755)
	tmp = filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("runuser", "-u", otherUser, "--", bin, "-test.run=^$").CombinedOutput(); err != nil {
		need("cannot run the test binary as %s: %v: %s", otherUser, err, out)
	}
	return bin, tmp
}

// runAs starts helper args of bin as the other user.
func runAs(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command("runuser", append([]string{"-u", otherUser, "--", bin}, args...)...)
	cmd.Dir = "/"
	return cmd
}

func TestClaimsAcrossUsers(t *testing.T) {
	bin, tmp := asOtherUser(t)
	me, _ := Self()
	other, err := exec.Command("id", "-u", otherUser).Output()
	if err != nil {
		t.Fatal(err)
	}
	otherUID := strings.TrimSpace(string(other))

	t.Run("live claim of the other user blocks mine, a dead one does not", func(t *testing.T) {
		base := filepath.Join(tmp, "a")
		theirs := startHelper(t, runAs(bin, "claim", base, "1", "theirs"))
		if theirs.got != "GPU-fake-0" {
			t.Fatalf("the other user's claimer got %q", theirs.got)
		}
		theirDir := base + "-" + otherUID
		if why := checkDir(theirDir, mustAtoi(t, otherUID)); why != "" {
			t.Fatalf("the other user's claims directory %s %s", theirDir, why)
		}
		claims := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
		_, err := claims.Acquire(1, HolderFor(me, "mine", "1"))
		if !errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), "cluster theirs") {
			t.Fatalf("the other user's live claim did not block mine: %v", err)
		}
		two := &Claims{Base: base, Inventory: fakeInventory(2, nil)}
		got, err := two.Acquire(1, HolderFor(me, "mine", "2"))
		if err != nil || got[0].ID != "GPU-fake-1" {
			t.Fatalf("with a second GPU: %+v %v, want GPU 1", got, err)
		}
		two.Release(got, me)
		theirFiles, _ := filepath.Glob(filepath.Join(theirDir, "*.claim"))
		if len(theirFiles) != 1 {
			t.Fatalf("the other user's claim files: %v", theirFiles)
		}
		theirs.stop() // its process ends; its claim file stays, dead
		// A claim file in their directory that they do not own (root's,
		// here; a hard link elsewhere) is not theirs: ignored.
		plant(t, theirDir, 0, claimFile{Holder: HolderFor(me, "not-theirs", "1")})
		got, err = claims.Acquire(1, HolderFor(me, "mine", "3"))
		if err != nil || got[0].ID != "GPU-fake-0" {
			t.Fatalf("the other user's dead claim still blocks: %+v %v", got, err)
		}
		if _, err := os.Lstat(theirFiles[0]); err != nil {
			t.Errorf("I removed the other user's (dead) claim: %v", err)
		}
		// And the other user sees mine.
		again := startHelper(t, runAs(bin, "claim", base, "1", "theirs-again"))
		if !strings.HasPrefix(again.got, "ERR ") || !strings.Contains(again.got, "cluster mine") {
			t.Errorf("the other user did not honour my claim: %s", again.got)
		}
	})

	t.Run("the other user cannot remove or overwrite my claim", func(t *testing.T) {
		base := filepath.Join(tmp, "b")
		claims := &Claims{Base: base, Inventory: fakeInventory(2, nil)}
		got, err := claims.Acquire(1, HolderFor(me, "mine", "1"))
		if err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(got[0].Path)
		out, err := runAs(bin, "tamper", got[0].Path).Output()
		if err != nil {
			t.Fatalf("tamper: %v", err)
		}
		var tried map[string]string
		if err := json.Unmarshal(out, &tried); err != nil || len(tried) != 6 {
			t.Fatalf("tamper printed %q: %v", out, err)
		}
		t.Logf("the other user's attempts: %s", out)
		denied := map[string]bool{syscall.EACCES.Error(): true, syscall.EPERM.Error(): true}
		for op, res := range tried {
			if !denied[res] {
				t.Errorf("the other user's %s of my claim: %s, want EACCES or EPERM", op, res)
			}
		}
		if after, err := os.ReadFile(got[0].Path); err != nil || string(after) != string(before) {
			t.Errorf("my claim changed: %s %v", after, err)
		}
		if gpus, _ := claims.State(); gpus[0].Holder == nil || gpus[0].Holder.Cluster != "mine" || !gpus[1].Free() {
			t.Errorf("state after tampering: %+v", gpus)
		}
	})

	for _, link := range []bool{false, true} {
		name := "a directory the other user made under my name"
		if link {
			name = "a symlink the other user made under my name"
		}
		t.Run(name, func(t *testing.T) {
			base := filepath.Join(tmp, "c")
			if link {
				base = filepath.Join(tmp, "d")
			}
			canonical := ownPath(base)
			squatDir, squatLink := canonical, "-"
			if link {
				squatDir, squatLink = base+"-theirs", canonical
			}
			out, err := runAs(bin, "squat", squatDir, squatLink, strconv.Itoa(me.PID), strconv.FormatUint(me.Start, 10)).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("squat: %v: %s", err, out)
			}
			squatted, _ := filepath.Glob(filepath.Join(squatDir, "*"))
			claims := &Claims{Base: base, Inventory: fakeInventory(1, nil)}
			got, err := claims.Acquire(1, HolderFor(me, "mine", "1"))
			if err != nil {
				t.Fatalf("the other user's directory under my name blocked my claim: %v", err)
			}
			dir := filepath.Dir(got[0].Path)
			if !regexp.MustCompile(`^` + regexp.QuoteMeta(canonical) + `-[0-9a-f]{16}$`).MatchString(dir) {
				t.Fatalf("my claim went to %s, want a fallback %s-<random>", dir, canonical)
			}
			if files, _ := filepath.Glob(filepath.Join(squatDir, "*")); strings.Join(files, " ") != strings.Join(squatted, " ") {
				t.Errorf("my claim was redirected into the other user's directory: %v", files)
			}
			if why := checkDir(dir, os.Geteuid()); why != "" {
				t.Errorf("fallback %s %s", dir, why)
			}
			// The other user honours my claim in the fallback directory.
			theirs := startHelper(t, runAs(bin, "claim", base, "1", "theirs"))
			if !strings.HasPrefix(theirs.got, "ERR ") || !strings.Contains(theirs.got, "cluster mine") {
				t.Errorf("the other user did not honour my claim in %s: %s", dir, theirs.got)
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
