package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Files of a cluster directory. Each has exactly one writer, and every write is
// temp file + rename, because shared filesystems (Lustre, NFS with nolock,
// BeeGFS) cannot be trusted with locks.
const (
	specFile       = "spec.json"        // written once by `up`
	tokenFile      = "token"            // written once by `up`
	setupFile      = "setup.sh"         // written once by `up`
	headFile       = "head.json"        // written by the head job
	membershipFile = "membership.json"  // written by the head job
	downFile       = "down.json"        // written by `down`
	submissionsDir = "submissions"      // one file per sbatch call
	nodesDir       = "nodes"            // one file per job, written by that job
	scriptsDir     = "scripts"          // rendered batch scripts
	binDir         = "bin"              // the sraybatch copy jobs run
	eventsDir      = "events"           // one JSON-lines file per driver job, written by it
	drainsDir      = "drains"           // one file per drained worker, written by the head
	autoscalerFile = "autoscaler.json"  // written by the head job
	headEndingFile = "head-ending.json" // written by the head job when told to stop
	pythonDir      = "python"           // the trainloop Python package drivers import
)

// The cluster's Prometheus files.
const (
	metricsToken = "metrics-token"           // written once by `up`: scrape-only
	targetsFile  = "prometheus-targets.json" // file_sd, written by the head job (emptied by `down`)
)

// Environment variables a driver command gets from its supervisor; the
// Python side (sraybatch_trainloop.state) reads them. Both are checked
// against testdata/shared-state.json.
const (
	EnvClusterDir = "SRAYBATCH_CLUSTER_DIR"
	EnvEvents     = "SRAYBATCH_EVENTS"
	EnvJob        = "SRAYBATCH_JOB"
	EnvHeadJob    = "SRAYBATCH_HEAD_JOB"
	// EnvGeneration is the head generation a driver runs in (rollover
	// clusters only); EnvResumed=1 marks a driver started again in a later
	// generation, which resumes from its checkpoint.
	EnvGeneration = "SRAYBATCH_GENERATION"
	EnvResumed    = "SRAYBATCH_RESUMED"
)

// ErrNotFound is returned when a cluster directory does not exist.
var ErrNotFound = errors.New("cluster not found")

// ErrExists is returned by Create when the cluster's name is taken.
var ErrExists = errors.New("already exists")

// Store is the root of all clusters ($SRAYBATCH_HOME/clusters).
type Store struct{ Root string }

// DefaultStore honours $SRAYBATCH_HOME, else ~/.sraybatch.
func DefaultStore() (Store, error) {
	home := os.Getenv("SRAYBATCH_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return Store{}, fmt.Errorf("find home directory (set SRAYBATCH_HOME): %w", err)
		}
		home = filepath.Join(h, ".sraybatch")
	}
	abs, err := filepath.Abs(home)
	if err != nil {
		return Store{}, fmt.Errorf("resolve SRAYBATCH_HOME: %w", err)
	}
	return Store{Root: filepath.Join(abs, "clusters")}, nil
}

// Home is the sraybatch home directory ($SRAYBATCH_HOME) the store lives in.
func (s Store) Home() string { return filepath.Dir(s.Root) }

// Dir is one cluster's directory.
type Dir struct{ Path string }

// Cluster returns the directory of a named cluster without checking it exists.
func (s Store) Cluster(name string) Dir { return Dir{Path: filepath.Join(s.Root, name)} }

// Open returns an existing cluster's directory.
func (s Store) Open(name string) (Dir, error) {
	if err := ValidateName(name); err != nil {
		return Dir{}, err
	}
	d := s.Cluster(name)
	if _, err := os.Stat(d.file(specFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Dir{}, fmt.Errorf("cluster %q: %w under %s (see `sraybatch status --all`)", name, ErrNotFound, s.Root)
		}
		return Dir{}, fmt.Errorf("open cluster %q: %w", name, err)
	}
	return d, nil
}

// Names lists the clusters in the store, sorted.
func (s Store) Names() ([]string, error) {
	entries, err := os.ReadDir(s.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && ValidateName(e.Name()) == nil {
			if _, err := os.Stat(filepath.Join(s.Root, e.Name(), specFile)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// Create makes a new cluster directory (0700) holding the spec, a fresh Ray
// token and the setup lines; it fails if the name is taken. The directory is
// built under a temporary name and renamed into place, so a failed `up` leaves
// no half-made cluster behind.
func (s Store) Create(spec Spec, setup string) (Dir, error) {
	if err := ValidateName(spec.Name); err != nil {
		return Dir{}, err
	}
	if err := os.MkdirAll(s.Root, 0o700); err != nil {
		return Dir{}, fmt.Errorf("create %s: %w", s.Root, err)
	}
	final := s.Cluster(spec.Name)
	if _, err := os.Stat(final.Path); err == nil {
		return Dir{}, fmt.Errorf("cluster %q %w in %s: choose another --name, or `sraybatch down --cluster %s --forget` first", spec.Name, ErrExists, s.Root, spec.Name)
	}
	tmp, err := os.MkdirTemp(s.Root, ".new-"+spec.Name+"-")
	if err != nil {
		return Dir{}, fmt.Errorf("create cluster directory: %w", err)
	}
	d := Dir{Path: tmp}
	cleanup := func(err error) (Dir, error) {
		os.RemoveAll(tmp)
		return Dir{}, err
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return cleanup(err)
	}
	for _, sub := range []string{submissionsDir, nodesDir, scriptsDir, binDir, eventsDir, pythonDir, drainsDir} {
		if err := os.Mkdir(d.file(sub), 0o700); err != nil {
			return cleanup(fmt.Errorf("create cluster directory: %w", err))
		}
	}
	token, err := newToken()
	if err != nil {
		return cleanup(err)
	}
	if err := WriteFileAtomic(d.file(tokenFile), []byte(token+"\n"), 0o600); err != nil {
		return cleanup(err)
	}
	// A second token, for Prometheus only: whoever runs Prometheus must
	// not be able to submit work to Ray.
	scrape, err := newToken()
	if err != nil {
		return cleanup(err)
	}
	if err := WriteFileAtomic(d.file(metricsToken), []byte(scrape+"\n"), 0o600); err != nil {
		return cleanup(err)
	}
	if err := WriteFileAtomic(d.file(setupFile), []byte(setup+"\n"), 0o600); err != nil {
		return cleanup(err)
	}
	for _, t := range spec.Workers {
		if t.Setup == "" {
			continue
		}
		if err := WriteFileAtomic(d.SetupPathOf(t), []byte(t.Setup+"\n"), 0o600); err != nil {
			return cleanup(err)
		}
	}
	spec.SchemaVersion = SchemaVersion
	if err := WriteJSON(d.file(specFile), spec); err != nil {
		return cleanup(err)
	}
	// Rename fails if another `up` created the same name meanwhile: no clobbering.
	if err := os.Rename(tmp, final.Path); err != nil {
		return cleanup(fmt.Errorf("cluster %q %w in %s: choose another --name", spec.Name, ErrExists, s.Root))
	}
	return final, nil
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (d Dir) file(name string) string { return filepath.Join(d.Path, name) }

// Name is the cluster's name (the directory's base name).
func (d Dir) Name() string { return filepath.Base(d.Path) }

// Home is the sraybatch home directory the cluster lives in
// ($SRAYBATCH_HOME/clusters/NAME).
func (d Dir) Home() string { return filepath.Dir(filepath.Dir(d.Path)) }

// TokenPath is the file that RAY_AUTH_TOKEN_PATH points at.
func (d Dir) TokenPath() string { return d.file(tokenFile) }

// RayToken is the token a client of the cluster's GCS or dashboard sends:
// the current head generation's (TokenPathOf), or "" for an insecure
// cluster, which has none.
func (d Dir) RayToken(insecure bool) (string, error) {
	if insecure {
		return "", nil
	}
	h, _, err := d.Head()
	if err != nil {
		return "", fmt.Errorf("read the cluster's token: %w", err)
	}
	return ReadToken(d.TokenPathOf(h))
}

// ReadToken reads the Ray token at path (TokenPath, TokenPathOf).
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the cluster's token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// MetricsTokenPath is the scrape-only bearer token of the head's /metrics
// (Prometheus's authorization.credentials_file); never the Ray token.
func (d Dir) MetricsTokenPath() string { return d.file(metricsToken) }

// TargetsPath is the cluster's Prometheus file_sd file.
func (d Dir) TargetsPath() string { return d.file(targetsFile) }

// SetupPath holds the user's --setup lines.
func (d Dir) SetupPath() string { return d.file(setupFile) }

// SetupPathOf holds the setup lines a worker type's nodes run: its own,
// or the cluster's.
func (d Dir) SetupPathOf(t WorkerType) string {
	if t.Setup == "" {
		return d.SetupPath()
	}
	return d.file("setup-" + t.Name + ".sh")
}

// BinaryPath is the sraybatch copy the cluster's jobs run.
func (d Dir) BinaryPath() string { return filepath.Join(d.Path, binDir, "sraybatch") }

// EventsPath is the JSON-lines event file of a driver job.
func (d Dir) EventsPath(job string) string { return filepath.Join(d.Path, eventsDir, job+".jsonl") }

// ClusterEventsPath is the head's event file (job_state, cluster_sample).
func (d Dir) ClusterEventsPath() string { return filepath.Join(d.Path, eventsDir, "cluster.jsonl") }

// PythonPath is the directory put on a driver's PYTHONPATH.
func (d Dir) PythonPath() string { return filepath.Join(d.Path, pythonDir) }

// ScriptPath names a rendered batch script.
func (d Dir) ScriptPath(name string) string { return filepath.Join(d.Path, scriptsDir, name) }

// Spec reads the cluster's spec.
func (d Dir) Spec() (Spec, error) {
	var s Spec
	err := ReadJSON(d.file(specFile), &s)
	return s, err
}

// AddSubmission records one sbatch call in a file of its own.
func (d Dir) AddSubmission(sub Submission) error {
	sub.SchemaVersion = SchemaVersion
	name := fmt.Sprintf("%s-%d-%s.json", sub.Role, sub.Submitted.UnixNano(), uuid.NewString()[:8])
	return WriteJSON(filepath.Join(d.Path, submissionsDir, name), sub)
}

// Submissions reads every submission, oldest first.
func (d Dir) Submissions() ([]Submission, error) {
	subs, err := ReadJSONDir[Submission](filepath.Join(d.Path, submissionsDir))
	sort.SliceStable(subs, func(i, j int) bool { return subs[i].Submitted.Before(subs[j].Submitted) })
	return subs, err
}

// WriteNode replaces the job's own record.
func (d Dir) WriteNode(r NodeRecord) error {
	r.SchemaVersion = SchemaVersion
	r.Updated = time.Now().UTC()
	return WriteJSON(d.nodePath(r.Job), r)
}

func (d Dir) nodePath(job string) string { return filepath.Join(d.Path, nodesDir, job+".json") }

// Node reads one job's record; ok is false when the job has not written one yet.
func (d Dir) Node(job string) (r NodeRecord, ok bool, err error) {
	err = ReadJSON(d.nodePath(job), &r)
	if errors.Is(err, fs.ErrNotExist) {
		return r, false, nil
	}
	return r, err == nil, err
}

// Nodes reads every job record, keyed by job.
func (d Dir) Nodes() (map[string]NodeRecord, error) {
	list, err := ReadJSONDir[NodeRecord](filepath.Join(d.Path, nodesDir))
	recs := make(map[string]NodeRecord, len(list))
	for _, r := range list {
		recs[r.Job] = r
	}
	return recs, err
}

// WriteHead publishes the head's address.
func (d Dir) WriteHead(h HeadInfo) error {
	h.SchemaVersion = SchemaVersion
	return WriteJSON(d.file(headFile), h)
}

// Head reads the cluster's current head: its latest published generation,
// or head.json for a cluster without generations; ok is false until the
// head has published.
func (d Dir) Head() (h HeadInfo, ok bool, err error) {
	if g, ok, err := d.LatestGeneration(); ok || err != nil {
		return g.HeadInfo, ok, err
	}
	err = ReadJSON(d.file(headFile), &h)
	if errors.Is(err, fs.ErrNotExist) {
		return h, false, nil
	}
	return h, err == nil, err
}

// WriteMembership replaces the Ray membership snapshot.
func (d Dir) WriteMembership(m MembershipSnapshot) error {
	m.SchemaVersion = SchemaVersion
	return WriteJSON(d.file(membershipFile), m)
}

// Membership reads the snapshot; an absent one is empty.
func (d Dir) Membership() (MembershipSnapshot, error) {
	m := MembershipSnapshot{Nodes: map[string]*MemberNode{}}
	err := ReadJSON(d.file(membershipFile), &m)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if m.Nodes == nil {
		m.Nodes = map[string]*MemberNode{}
	}
	return m, err
}

// MarkDown records that `down` was asked for.
func (d Dir) MarkDown(t time.Time) error {
	return WriteJSON(d.file(downFile), DownRequest{SchemaVersion: SchemaVersion, Requested: t.UTC()})
}

// Down reports whether `down` was asked for.
func (d Dir) Down() (DownRequest, bool, error) {
	var r DownRequest
	err := ReadJSON(d.file(downFile), &r)
	if errors.Is(err, fs.ErrNotExist) {
		return r, false, nil
	}
	return r, err == nil, err
}

// WriteFileAtomic writes data to a unique temporary file beside path, syncs it
// and renames it over path: readers see the old or the new file, never a torn one.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteFileSyncLater writes data as WriteFileAtomic does, but renames the
// file over path before it is synced: readers see it at once, and the
// returned sync, which must be called once, makes it durable and closes it.
// Until sync returns a crash may leave path empty, so a file that others
// rely on after a crash must be synced before anything names it. It lets a
// caller overlap the fsync (milliseconds on a disk) with other work.
func WriteFileSyncLater(path string, data []byte, perm os.FileMode) (sync func() error, err error) {
	f, err := writeTemp(path, data, perm)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return func() error {
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}, nil
}

// writeTemp writes data with perm to a new temporary file beside path and
// returns it open; on error nothing is left behind.
func writeTemp(path string, data []byte, perm os.FileMode) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return f, nil
}

// WriteJSON writes v as indented JSON, atomically and 0600.
func WriteJSON(path string, v any) error {
	b, err := marshalJSON(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, b, 0o600)
}

// marshalJSON is v as a state file holds it: indented, ending in a newline.
func marshalJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return append(b, '\n'), nil
}

// CorruptError names a state file that cannot be read and says how to recover.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s is corrupt (%v): restore it from a backup or move it aside; sraybatch never rewrites it", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// ReadJSON reads a state file into v. A missing file's error stays
// fs.ErrNotExist; an unreadable one is a *CorruptError; one from a newer
// sraybatch (a higher schema_version) is refused.
func ReadJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err // fs.ErrNotExist stays visible to callers
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var head struct {
		SchemaVersion int `json:"schema_version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return &CorruptError{Path: path, Err: err}
	}
	if head.SchemaVersion > SchemaVersion {
		return fmt.Errorf("state file %s has schema version %d, newer than this sraybatch (%d): use the newer sraybatch", path, head.SchemaVersion, SchemaVersion)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &CorruptError{Path: path, Err: err}
	}
	return nil
}

// ReadJSONDir reads every JSON file of dir (ReadJSON), in name order. Temp
// files of writers in progress are skipped, and so are files renamed away
// meanwhile. A missing dir is an error that wraps fs.ErrNotExist.
func ReadJSONDir[T any](dir string) ([]T, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var out []T
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		var v T
		if err := ReadJSON(filepath.Join(dir, name), &v); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

// WriteAutoscaleSettings replaces the spec's autoscale settings (`up` and
// `autoscale` are its only writers; the head rereads it every poll).
func (d Dir) WriteAutoscaleSettings(a AutoscaleSpec) error {
	spec, err := d.Spec()
	if err != nil {
		return err
	}
	spec.Autoscale = a
	return WriteJSON(d.file(specFile), spec)
}

// WriteAutoscalerStatus publishes the autoscaler's status.
func (d Dir) WriteAutoscalerStatus(s AutoscalerStatus) error {
	s.SchemaVersion = SchemaVersion
	return WriteJSON(d.file(autoscalerFile), s)
}

// Autoscaler reads the autoscaler's status; ok is false before its first poll.
func (d Dir) Autoscaler() (s AutoscalerStatus, ok bool, err error) {
	err = ReadJSON(d.file(autoscalerFile), &s)
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	return s, err == nil, err
}

// AutoscalerEventsPath is the autoscaler's event log (JSON lines, written by the head job).
func (d Dir) AutoscalerEventsPath() string {
	return filepath.Join(d.Path, eventsDir, "autoscaler.jsonl")
}

// WriteHeadEnding tells the cluster's other jobs at once that the head was
// told to stop (scancel, down, its node going away), before it has stopped
// its Ray: they free their GPUs without waiting for the head's record.
func (d Dir) WriteHeadEnding(h HeadEnding) error {
	h.SchemaVersion = SchemaVersion
	return WriteJSON(d.file(headEndingFile), h)
}

// HeadEnding reads the head's notice that it is stopping.
func (d Dir) HeadEnding() (h HeadEnding, ok bool, err error) {
	err = ReadJSON(d.file(headEndingFile), &h)
	if errors.Is(err, fs.ErrNotExist) {
		return h, false, nil
	}
	return h, err == nil, err
}
