package local

// Directory trust: which claims directories are a user's own (real, owned by
// the uid in their name, writable by nobody else), and this user's own one.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// claimsDir is a directory of claims that passed the checks, and whose.
type claimsDir struct {
	path string
	uid  int
}

// dirs lists every user's claims directory: Base-<uid> and Base-<uid>-*
// that are real directories owned by <uid> and writable by nobody else.
func (c *Claims) dirs() []claimsDir {
	base := c.base()
	parent, prefix := filepath.Dir(base), filepath.Base(base)+"-"
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var dirs []claimsDir
	for _, e := range entries {
		uid, ok := dirUID(e.Name(), prefix)
		if !ok {
			continue
		}
		path := filepath.Join(parent, e.Name())
		if checkDir(path, uid) == "" {
			dirs = append(dirs, claimsDir{path: path, uid: uid})
		}
	}
	return dirs
}

// dirUID parses <prefix><uid> and <prefix><uid>-<suffix>.
func dirUID(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	digits, suffix, hasSuffix := strings.Cut(rest, "-")
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" || (hasSuffix && suffix == "") {
		return 0, false
	}
	uid, err := strconv.Atoi(digits)
	if err != nil || strconv.Itoa(uid) != digits {
		return 0, false
	}
	return uid, true
}

// checkDir says what keeps path from being uid's claims directory; "" when
// nothing does. It never follows a symlink.
func checkDir(path string, uid int) string {
	info, err := os.Lstat(path)
	if err != nil {
		return "cannot be read: " + err.Error()
	}
	return checkDirInfo(info, uid)
}

func checkDirInfo(info fs.FileInfo, uid int) string {
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		return "is a symlink"
	case !info.IsDir():
		return "is not a directory"
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != uid {
		return "is not owned by uid " + strconv.Itoa(uid)
	}
	if info.Mode().Perm()&0o022 != 0 {
		return "is writable by other users"
	}
	return ""
}

// ownDir is the directory this user's claims go to, created when missing:
// Base-<uid>, or, when something fails the checks under that name, the
// first good Base-<uid>-<suffix> (made with a random suffix when none is).
func (c *Claims) ownDir() (string, error) {
	uid := os.Geteuid()
	if c.own != "" {
		if why := checkDir(c.own, uid); why != "" {
			return "", fmt.Errorf("GPU claims directory %s %s", c.own, why)
		}
		return c.own, nil
	}
	canonical := c.base() + "-" + strconv.Itoa(uid)
	if err := os.MkdirAll(filepath.Dir(canonical), 0o755); err != nil {
		return "", fmt.Errorf("create GPU claims directory: %w", err)
	}
	if ok, err := makeOwnDir(canonical); err != nil || ok {
		return canonical, err
	}
	// Not ours to use: look for a fallback made before, else make one.
	parent, prefix := filepath.Dir(canonical), filepath.Base(canonical)+"-"
	entries, err := os.ReadDir(parent)
	if err != nil {
		return "", fmt.Errorf("read GPU claims directories: %w", err)
	}
	var names []string
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), prefix); ok && rest != "" && !strings.Contains(rest, "-") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names) // all of this user's processes settle on the same one
	for _, name := range names {
		path := filepath.Join(parent, name)
		if checkDir(path, uid) == "" {
			return path, fixMode(path)
		}
	}
	for range 10 {
		path := canonical + "-" + randomSuffix()
		if ok, err := makeOwnDir(path); err != nil || ok {
			return path, err
		}
	}
	return "", fmt.Errorf("create a GPU claims directory next to %s: every name was taken", canonical)
}

// makeOwnDir makes sure path is a claims directory of this user's, creating
// it when missing: false when something else is there.
func makeOwnDir(path string) (bool, error) {
	for range 3 {
		err := os.Mkdir(path, 0o755)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("create GPU claims directory: %w", err)
		}
		info, lerr := os.Lstat(path)
		if errors.Is(lerr, fs.ErrNotExist) {
			continue // removed in between: try again
		}
		if lerr != nil {
			return false, fmt.Errorf("GPU claims directory: %w", lerr)
		}
		if checkDirInfo(info, os.Geteuid()) != "" {
			return false, nil
		}
		return true, fixMode(path)
	}
	return false, nil
}

// fixMode makes this user's claims directory readable by everyone (the
// umask may have taken that away) without following a symlink.
func fixMode(path string) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("GPU claims directory: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fmt.Errorf("GPU claims directory: %w", &fs.PathError{Op: "stat", Path: path, Err: err})
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return fmt.Errorf("GPU claims directory %s changed under us", path)
	}
	if st.Mode&0o7777 != 0o755 {
		if err := syscall.Fchmod(fd, 0o755); err != nil {
			return fmt.Errorf("GPU claims directory: %w", &fs.PathError{Op: "chmod", Path: path, Err: err})
		}
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lockDir runs fn holding the lock of dir, a claims directory of this
// user's: it serialises this user's read-modify-writes there.
func lockDir(dir string, fn func() error) error {
	lockPath := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(lockPath, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("lock GPU claims: %w", err)
	}
	defer f.Close()
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lock GPU claims %s: %w", lockPath, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}
