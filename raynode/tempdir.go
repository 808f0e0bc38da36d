package raynode

import (
	"fmt"
	"os"
	"strings"
)

// tempDirs are a node's local directories: private, made by the supervisor
// with mode 0700, and ray inside it, given to Ray as --temp-dir. Ray makes
// its temp and session dirs mode 0777 (sockets 0755 inside), so on a node
// shared with other users only the private parent keeps them out of the
// session's sockets and logs.
type tempDirs struct {
	private, ray string
}

// Unix socket paths must fit sun_path (108 bytes with its NUL). Ray puts its
// sockets at <temp-dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store.
const (
	maxSocketPath = 107
	raySocketTail = len("/session_2026-11-29_19-40-12_123456_4194304/sockets/plasma_store")
	// privateTail is what MkdirTemp and the ray subdirectory add to the base,
	// besides the job key: "/srb-<job>-" + up to 10 random digits + "/r".
	privateTail = len("/srb--") + 10 + len("/r")
)

// tempBase chooses where a node's temp dir goes: $TMPDIR when it is short
// enough for Ray's socket paths and not under the (often shared) home
// directory, else /tmp. /tmp/ray is never used: it may belong to someone else.
func tempBase(tmpdir, home, job string) string {
	if tmpdir == "" || underHome(tmpdir, home) {
		return "/tmp"
	}
	if len(tmpdir)+privateTail+len(job)+raySocketTail > maxSocketPath {
		return "/tmp"
	}
	return tmpdir
}

// makeTempDir makes the node's private temp dir and Ray's inside it.
func (s *supervisor) makeTempDir() (tempDirs, error) {
	base := tempBase(strings.TrimSuffix(s.cfg.Getenv("TMPDIR"), "/"), s.cfg.Getenv("HOME"), s.rec.Job)
	if s.spec.Container != nil {
		// Every runtime binds /tmp, or creates a bind target there; a
		// read-only image has no $TMPDIR to bind at.
		base = "/tmp"
	}
	private, err := os.MkdirTemp(base, "srb-"+s.rec.Job+"-")
	if err != nil {
		return tempDirs{}, fmt.Errorf("make Ray temp dir: %w", err)
	}
	// MkdirTemp asks for 0700 and the umask only removes bits; say it anyway,
	// since this mode is the boundary between users of the node.
	if err := os.Chmod(private, 0o700); err != nil {
		os.RemoveAll(private)
		return tempDirs{}, fmt.Errorf("make Ray temp dir private: %w", err)
	}
	ray := rayTempDir(private)
	if err := os.Mkdir(ray, 0o700); err != nil {
		os.RemoveAll(private)
		return tempDirs{}, fmt.Errorf("make Ray temp dir: %w", err)
	}
	if s.spec.Container != nil {
		if err := os.Mkdir(homeDir(private), 0o700); err != nil {
			os.RemoveAll(private)
			return tempDirs{}, fmt.Errorf("make HOME for the container: %w", err)
		}
	}
	return tempDirs{private: private, ray: ray}, nil
}

func underHome(path, home string) bool {
	return home != "" && (path == home || strings.HasPrefix(path, strings.TrimSuffix(home, "/")+"/"))
}
