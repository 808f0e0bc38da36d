//go:build e2e

package main

// Who the end-to-end tests run as. Nobody is root on an HPC site, and root
// hides whole classes of bugs (it reads every file and signals every
// process), so when the test binary runs as root every cluster command — the
// CLI, the jobs it submits, the drivers — runs as an unprivileged test user
// that scripts/dev-slurm creates. Root keeps only what SLURM administration
// and fault injection need (scontrol update, SIGSTOP, reading a stranger's
// files to check them).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// e2eUserEnv names the test user (default srbuser1); e2eOtherUser is the
// second user of the two-users-on-one-node test.
const (
	e2eUserEnv       = "SRAYBATCH_E2E_USER"
	e2eDefaultUser   = "srbuser1"
	e2eOtherUser     = "srbuser2"
	e2eUsersCreateBy = "scripts/dev-slurm up creates it"
)

// testUser is an unprivileged account the tests act as.
type testUser struct {
	name     string
	uid, gid uint32
	home     string
}

func lookupTestUser(name string) (*testUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("no test user %s (%s): %w", name, e2eUsersCreateBy, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, fmt.Errorf("test user %s has uid %s: it must be an unprivileged user", name, u.Uid)
	}
	return &testUser{name: name, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}, nil
}

// e2eUser is who runs the clusters: nil when the tests do not run as root
// (a developer's own account is unprivileged already).
func e2eUser(missing func(string)) *testUser {
	if os.Geteuid() != 0 {
		return nil
	}
	name := os.Getenv(e2eUserEnv)
	if name == "" {
		name = e2eDefaultUser
	}
	u, err := lookupTestUser(name)
	if err != nil {
		missing(err.Error())
	}
	return u
}

// as makes cmd run as the test user, in its own environment: HOME, USER and
// LOGNAME are the user's, and PATH loses what only root can reach.
func (u *testUser) as(cmd *exec.Cmd, env []string) {
	cmd.Env = env
	if u == nil {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
	cmd.Env = userEnv(env, u)
	if cmd.Dir == "" {
		cmd.Dir = u.home // a user's shell starts at home; sbatch makes it the job's directory
	}
}

// userEnv is env as the user's login would have it.
func userEnv(env []string, u *testUser) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "USER", "LOGNAME", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME":
			continue
		case "PATH":
			var keep []string
			for _, d := range filepath.SplitList(v) {
				if d != "/root" && !strings.HasPrefix(d, "/root/") {
					keep = append(keep, d)
				}
			}
			kv = "PATH=" + strings.Join(keep, string(filepath.ListSeparator))
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+u.home, "USER="+u.name, "LOGNAME="+u.name)
}

// give hands paths (recursively) to the test user, as if the user had made them.
func (u *testUser) give(t *testing.T, paths ...string) {
	t.Helper()
	if u == nil {
		return
	}
	for _, p := range paths {
		err := filepath.Walk(p, func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, int(u.uid), int(u.gid))
		})
		if err != nil {
			t.Fatalf("handing %s to %s: %v", p, u.name, err)
		}
	}
}

var reachChecks sync.Map // "user venv" → error

// checkReach fails the test with what to do unless the user can run the
// venv's Python and the sraybatch binary: CI's fresh clone may sit where
// only root reaches it.
func (u *testUser) checkReach(t *testing.T, venv, bin string) {
	t.Helper()
	if u == nil {
		return
	}
	v, _ := reachChecks.LoadOrStore(u.name+"\x00"+venv+"\x00"+bin, &reachCheck{})
	rc := v.(*reachCheck)
	rc.once.Do(func() { rc.err = u.reachError(venv, bin) })
	if rc.err != nil {
		t.Fatal(rc.err)
	}
}

// reachError says what to do when the user cannot run the venv's Python
// (importing Ray) or the sraybatch binary.
func (u *testUser) reachError(venv, bin string) error {
	for _, argv := range [][]string{
		{filepath.Join(venv, "bin", "python"), "-c", "import ray"},
		{bin, "version"},
	} {
		cmd := exec.Command(argv[0], argv[1:]...)
		u.as(cmd, os.Environ())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("the test user %s cannot run %s (%v: %s): build the venv where every user reaches it "+
				"(scripts/setup-ray puts it there; or set SRAYBATCH_VENV) and keep the test binary's directory open", u.name, argv[0], err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

type reachCheck struct {
	once sync.Once
	err  error
}

// command is any program run as the test user in the test's environment
// (a driver, `ray status`): what the user would type.
func (e e2eEnv) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	e.user.as(cmd, e.env)
	return cmd
}

// userFile copies a file of the repository into the test's home, owned by
// the test user: jobs run as the user and cannot read a clone under /root.
func (e e2eEnv) userFile(t *testing.T, src string) string {
	t.Helper()
	dir := e.userDir(t, "files")
	dst := filepath.Join(dir, filepath.Base(src))
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	e.user.give(t, dst)
	return dst
}

// userDir is a directory in the test's home that the test user owns.
func (e e2eEnv) userDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(e.home, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	e.user.give(t, dir)
	return dir
}

// A venv the test user cannot reach (a clone under root's 0700 home) fails
// with a message that says what to do, not with Ray's import error later.
func TestE2EUserUnreachableVenv(t *testing.T) {
	e2eShare(t, 0)
	e := needE2E(t)
	if e.user == nil {
		skipOutsideCI(t, "needs root to act as the test user")
	}
	if err := e.user.reachError(e.venv, e.bin); err != nil {
		t.Fatalf("the test's own venv: %v", err)
	}
	private := t.TempDir() // root's, 0700: what a clone under /root looks like to others
	venv := filepath.Join(private, "venv")
	if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(e.venv, "bin", "python"), filepath.Join(venv, "bin", "python")); err != nil {
		t.Fatal(err)
	}
	err := e.user.reachError(venv, e.bin)
	if err == nil || !strings.Contains(err.Error(), "cannot run "+venv) || !strings.Contains(err.Error(), "scripts/setup-ray") {
		t.Errorf("unreachable venv: %v; want a message naming %s and scripts/setup-ray", err, venv)
	}
}
