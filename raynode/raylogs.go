package raynode

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// Ray writes its logs into the node's private temp dir, which nobody else
// can read and which goes when the job ends; its dashboard listens on the
// head's localhost only. So the supervisor copies capped tails of them into
// the cluster's log dir (0700, files 0600), where `sraybatch logs --ray`
// reads them: the main ones while the node runs (liveRayLogs), every file
// once at the end (keepLogs).
const (
	// rayLogsEvery is how often a running node copies its main Ray logs.
	rayLogsEvery = 10 * time.Second
	// liveLogPerFile and liveLogTotal cap each live copy, so a chatty
	// raylet cannot fill the shared filesystem: the newest bytes win.
	liveLogPerFile = 256 << 10
	liveLogTotal   = 1 << 20
	// finalLogPerFile and finalLogTotal cap the copy of every log at the end.
	finalLogPerFile = 1 << 20
	finalLogTotal   = 64 << 20
)

// RayLogDir is where a job's Ray log tails are kept, in the cluster's log
// dir: those of its first (or only) Ray node.
func RayLogDir(logDir, job string) string { return filepath.Join(logDir, "ray-"+job) }

// RayLogDirOf is where a job keeps the Ray log tails of its node in head
// generation gen: a rollover cluster's job restarts its Ray node in each
// generation it joins (a promoted worker as the head), and Ray's log names
// repeat, so each generation after the first has its own dir (ray-<job>.g<gen>).
func RayLogDirOf(logDir, job string, gen int) string {
	if gen <= 1 {
		return RayLogDir(logDir, job)
	}
	return RayLogDir(logDir, job) + ".g" + strconv.Itoa(gen)
}

// RayLogDirs are the dirs of a job's Ray log tails that exist, oldest
// generation first.
func RayLogDirs(logDir, job string) []string {
	type genDir struct {
		gen int
		dir string
	}
	var dirs []genDir
	if st, err := os.Stat(RayLogDir(logDir, job)); err == nil && st.IsDir() {
		dirs = append(dirs, genDir{1, RayLogDir(logDir, job)})
	}
	later, _ := filepath.Glob(RayLogDir(logDir, job) + ".g*")
	for _, d := range later {
		if g, err := strconv.Atoi(strings.TrimPrefix(d, RayLogDir(logDir, job)+".g")); err == nil && g > 1 {
			dirs = append(dirs, genDir{g, d})
		}
	}
	slices.SortFunc(dirs, func(a, b genDir) int { return a.gen - b.gen })
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = d.dir
	}
	return out
}

// rayLogDir is where this node's Ray log tails go in its generation.
func (s *supervisor) rayLogDir() string {
	return RayLogDirOf(s.spec.LogDir, s.rec.Job, s.rollover.gen)
}

// RayLogFiles are the Ray logs that say most about a node of this role, as
// patterns of the names in Ray's session log dir: the head's GCS, every
// node's raylet, a driver's core-driver log. They are copied while the node
// runs, and `sraybatch logs --ray` shows them.
func RayLogFiles(role cluster.Role) []string {
	files := []string{"raylet.out", "raylet.err"}
	switch role {
	case cluster.RoleHead:
		files = append([]string{"gcs_server.out", "gcs_server.err"}, files...)
	case cluster.RoleDriver:
		files = append(files, "python-core-driver-*.log")
	}
	return files
}

// rayTempDir is Ray's --temp-dir inside a node's private temp dir.
func rayTempDir(private string) string { return filepath.Join(private, "r") }

// sessionLogs is the log dir of Ray's current session under its temp dir.
func sessionLogs(rayTmp string) string { return filepath.Join(rayTmp, "session_latest", "logs") }

// liveRayLogs copies a running node's main Ray logs (RayLogFiles) at most
// every rayLogsEvery, and only those that changed since.
type liveRayLogs struct {
	src, dst string
	patterns []string
	last     time.Time
	copied   map[string]fileStamp
	// warned is set after the first failure is logged: a full or gone
	// filesystem would fail every time.
	warned bool
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func (s *supervisor) liveRayLogs() *liveRayLogs {
	if s.spec.LogDir == "" || s.rec.TempDir == "" {
		return nil
	}
	return &liveRayLogs{
		src: sessionLogs(rayTempDir(s.rec.TempDir)), dst: s.rayLogDir(),
		patterns: RayLogFiles(s.cfg.Role), copied: map[string]fileStamp{},
	}
}

// copyIfDue copies once rayLogsEvery has passed since the last copy (at
// once the first time).
func (l *liveRayLogs) copyIfDue(now time.Time, logf func(string, ...any)) {
	if l == nil || (!l.last.IsZero() && now.Sub(l.last) < rayLogsEvery) {
		return
	}
	l.last = now
	if err := l.copy(); err != nil && !l.warned {
		l.warned = true
		logf("warning: copy Ray logs to %s: %v", l.dst, err)
	}
}

func (l *liveRayLogs) copy() error {
	var names []string
	for _, p := range l.patterns {
		m, err := filepath.Glob(filepath.Join(l.src, p))
		if err != nil {
			return err
		}
		names = append(names, m...)
	}
	if len(names) == 0 {
		return nil // Ray has not written its logs yet
	}
	if err := os.MkdirAll(l.dst, 0o700); err != nil {
		return err
	}
	var total int64
	for _, src := range names {
		st, err := os.Stat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		stamp := fileStamp{st.Size(), st.ModTime()}
		if l.copied[src] == stamp || total >= liveLogTotal {
			continue
		}
		n, err := copyTail(src, filepath.Join(l.dst, filepath.Base(src)), min(liveLogPerFile, liveLogTotal-total))
		if err != nil {
			return err
		}
		total += n
		l.copied[src] = stamp
	}
	return nil
}

// keepLogs copies the tail of every Ray log file to the log dir dst (the
// generation's: rayLogDir) before the node-local temp dir is removed.
func (s *supervisor) keepLogs(rayTmp, dst string) {
	if s.spec.LogDir == "" {
		return
	}
	if err := copyLogTails(sessionLogs(rayTmp), dst, finalLogPerFile, finalLogTotal); err != nil {
		s.logf("warning: keep Ray logs: %v", err)
	}
}

// copyLogTails copies the last perFile bytes of every file under src to dst,
// up to total bytes, so Ray's logs outlive the node-local temp dir.
func copyLogTails(src, dst string, perFile, total int64) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	var copied int64
	for _, e := range entries {
		if !e.Type().IsRegular() || copied >= total {
			continue
		}
		n, err := copyTail(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), min(perFile, total-copied))
		if err != nil {
			return err
		}
		copied += n
	}
	return nil
}

// copyTail replaces dst with the last limit bytes of src, atomically: a
// reader (`sraybatch logs --ray`) sees the previous copy or this one.
func copyTail(src, dst string, limit int64) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return 0, err
	}
	if st.Size() > limit {
		if _, err := in.Seek(st.Size()-limit, io.SeekStart); err != nil {
			return 0, err
		}
	}
	// The file may grow while it is read: never more than limit.
	data, err := io.ReadAll(io.LimitReader(in, limit))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", src, err)
	}
	if err := cluster.WriteFileAtomic(dst, data, 0o600); err != nil {
		return 0, err
	}
	return int64(len(data)), nil
}
