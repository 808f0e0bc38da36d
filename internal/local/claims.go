package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/gpu"
)

// DefaultClaimsDir holds the GPU claims of every user's sraybatch on the
// host: a world-writable sticky directory, like /tmp itself, so each user
// can add claims and remove only their own.
const DefaultClaimsDir = "/tmp/sraybatch-gpu-claims"

// ClaimsDirEnv overrides DefaultClaimsDir (tests; hosts with a private /tmp).
const ClaimsDirEnv = "SRAYBATCH_GPU_CLAIMS"

// Claims hands out the host's GPUs to local nodes, one node per GPU set. A
// GPU is free when no live sraybatch node (of any cluster, any user) claims
// it and the driver shows no compute process of anyone else on it.
//
// Each claim is one file, <gpu>.<uid>.claim, created with O_EXCL and naming
// the holding process by pid and start time, so a claim outlives neither its
// process nor a recycled pid: such a claim is simply not live, and its owner's
// next claim removes it. Every read-modify-write of the directory runs under
// an flock of its .lock file (the directory is host-local by definition), so
// concurrent claimers never both take a GPU that looked free.
type Claims struct {
	Dir string
	// Inventory lists the host's GPUs (gpu.System in production; a
	// fixed list in tests).
	Inventory func() (gpu.Inventory, error)
}

// SystemClaims is the host's claims over the GPUs NVML reports, narrowed to
// the login shell's CUDA_VISIBLE_DEVICES when set; without NVML, the GPUs that
// variable names; with neither, none.
func SystemClaims() *Claims {
	dir := os.Getenv(ClaimsDirEnv)
	if dir == "" {
		dir = DefaultClaimsDir
	}
	return &Claims{Dir: dir, Inventory: func() (gpu.Inventory, error) {
		return gpu.System(os.Getenv, io.Discard).Inventory()
	}}
}

// Holder is who holds a claim: a node's process and what it belongs to.
type Holder struct {
	Proc
	UID     int       `json:"uid"`
	User    string    `json:"user"`
	Cluster string    `json:"cluster,omitempty"`
	Job     string    `json:"job,omitempty"`
	Claimed time.Time `json:"claimed"`
}

// HolderFor describes process p, of job in cluster, as a claim holder.
func HolderFor(p Proc, clusterName, job string) Holder {
	h := Holder{Proc: p, UID: os.Getuid(), Cluster: clusterName, Job: job, Claimed: time.Now().UTC()}
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	}
	return h
}

func (h Holder) describe() string {
	parts := []string{"pid " + strconv.Itoa(h.PID)}
	if h.User != "" {
		parts = append(parts, "user "+h.User)
	}
	if h.Cluster != "" {
		parts = append(parts, "cluster "+h.Cluster)
	}
	if h.Job != "" {
		parts = append(parts, "job "+h.Job)
	}
	return strings.Join(parts, ", ")
}

// GPU is one GPU of the host as the claims see it.
type GPU struct {
	Info gpu.Info
	// Holder is the live claim on it; nil when unclaimed.
	Holder *Holder
	// Foreign lists compute processes on an unclaimed GPU: someone outside
	// sraybatch uses it.
	Foreign []int
}

// Free reports whether a new node may take the GPU.
func (g GPU) Free() bool { return g.Holder == nil && len(g.Foreign) == 0 }

// Name is how messages name the GPU: its NVML index when known.
func (g GPU) Name() string {
	if g.Info.Index != nil && !g.Info.MIG {
		return "GPU " + strconv.Itoa(*g.Info.Index)
	}
	return "GPU " + g.Info.ID
}

func (g GPU) describe() string {
	switch {
	case g.Holder != nil:
		return g.Name() + " held by " + g.Holder.describe()
	case len(g.Foreign) > 0:
		pids := make([]string, len(g.Foreign))
		for i, p := range g.Foreign {
			pids[i] = strconv.Itoa(p)
		}
		return g.Name() + " busy with processes not started by sraybatch (pid " + strings.Join(pids, ", ") + ")"
	}
	return g.Name() + " free"
}

// Claimed is one GPU a claim took.
type Claimed struct {
	// ID names the GPU in CUDA_VISIBLE_DEVICES: its UUID when NVML knows it.
	ID   string `json:"id"`
	Name string `json:"name"`
	Path string `json:"path"`
}

// ErrNoGPU is returned (wrapped, with the GPUs and their holders named) when
// too few GPUs are free.
var ErrNoGPU = errors.New("not enough free GPUs on this host")

// State lists the host's GPUs and who holds them.
func (c *Claims) State() ([]GPU, error) {
	var gpus []GPU
	err := c.locked(func() error {
		var err error
		gpus, _, err = c.scan()
		return err
	})
	return gpus, err
}

// Acquire claims n GPUs for h, lowest index first (so a head gets GPU 0
// when it is free), all or none.
func (c *Claims) Acquire(n int, h Holder) ([]Claimed, error) {
	if n <= 0 {
		return nil, nil
	}
	var got []Claimed
	err := c.locked(func() error {
		gpus, source, err := c.scan()
		if err != nil {
			return err
		}
		var free []GPU
		for _, g := range gpus {
			if g.Free() {
				free = append(free, g)
			}
		}
		if len(free) < n {
			return noGPUError(n, gpus, source)
		}
		for _, g := range free[:n] {
			path := filepath.Join(c.Dir, claimKey(g.Info)+"."+strconv.Itoa(os.Getuid())+".claim")
			if err := createClaim(path, h); err != nil {
				for _, done := range got {
					os.Remove(done.Path)
				}
				return err
			}
			got = append(got, Claimed{ID: g.Info.ID, Name: g.Name(), Path: path})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// Hand passes claims to another holder (the node process that will use the
// GPUs), replacing each file in one rename so no reader sees it unheld.
func (c *Claims) Hand(cs []Claimed, h Holder) error {
	if len(cs) == 0 {
		return nil
	}
	return c.locked(func() error {
		for _, cl := range cs {
			if err := writeClaim(cl.Path, h); err != nil {
				return fmt.Errorf("hand over claim on %s: %w", cl.Name, err)
			}
		}
		return nil
	})
}

// Release removes the claims that p still holds; claims someone else has
// taken over since are left alone.
func (c *Claims) Release(cs []Claimed, p Proc) {
	if len(cs) == 0 {
		return
	}
	c.locked(func() error {
		for _, cl := range cs {
			if h, err := readClaim(cl.Path); err == nil && h.Proc == p {
				os.Remove(cl.Path)
			}
		}
		return nil
	})
}

// scan reads the inventory and the live claims, and removes this user's
// dead claims (others' dead claims are ignored: the sticky directory keeps
// them from being removed by anyone but their owner). It also returns where
// the inventory came from. Call it under the lock.
func (c *Claims) scan() ([]GPU, string, error) {
	inv, err := c.Inventory()
	if err != nil {
		return nil, "", fmt.Errorf("list this host's GPUs: %w", err)
	}
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return nil, "", fmt.Errorf("read GPU claims: %w", err)
	}
	live := map[string]*Holder{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".claim") || strings.HasPrefix(name, ".") {
			continue
		}
		key, _, _ := strings.Cut(name, ".")
		path := filepath.Join(c.Dir, name)
		h, err := readClaim(path)
		if err == nil && h.Alive() {
			live[key] = &h
			continue
		}
		if ownedByMe(e) {
			os.Remove(path)
		}
	}
	gpus := make([]GPU, len(inv.GPUs))
	for i, info := range inv.GPUs {
		g := GPU{Info: info, Holder: live[claimKey(info)]}
		if g.Holder == nil {
			for _, p := range info.Processes {
				g.Foreign = append(g.Foreign, p.PID)
			}
		}
		gpus[i] = g
	}
	return gpus, inv.Source, nil
}

func noGPUError(n int, gpus []GPU, source string) error {
	if len(gpus) == 0 {
		from := "no NVIDIA driver, and CUDA_VISIBLE_DEVICES is unset"
		switch source {
		case "NVML":
			from = "the NVIDIA driver sees none"
		case "":
		default:
			from = "no NVIDIA driver, and " + source + " names none"
		}
		return fmt.Errorf("%w: the job needs %s, but this host has none (%s): use --gpus-per-node 0 for CPU-only nodes", ErrNoGPU, plural(n, "GPU"), from)
	}
	if len(gpus) < n {
		return fmt.Errorf("%w: the job needs %s, this host has %d", ErrNoGPU, plural(n, "GPU"), len(gpus))
	}
	parts := make([]string, len(gpus))
	for i, g := range gpus {
		parts[i] = g.describe()
	}
	return fmt.Errorf("%w: the job needs %s: %s; free one with `sraybatch down`, or wait", ErrNoGPU, plural(n, "GPU"), strings.Join(parts, "; "))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

var unsafeKey = regexp.MustCompile(`[^A-Za-z0-9-]`)

// claimKey names a GPU in claim file names: its UUID when known, so every
// user's sraybatch agrees whatever CUDA_VISIBLE_DEVICES each one has.
func claimKey(g gpu.Info) string {
	id := g.ID
	if g.UUID != "" {
		id = g.UUID
	}
	return "gpu-" + unsafeKey.ReplaceAllString(id, "_")
}

func createClaim(path string, h Holder) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("claim GPU: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("claim GPU: %w", err)
	}
	return nil
}

// writeClaim replaces a claim file of this user's with one naming h.
func writeClaim(path string, h Holder) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // the umask must not hide claims from other users
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func readClaim(path string) (Holder, error) {
	var h Holder
	b, err := os.ReadFile(path)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("claim %s: %w", path, err)
	}
	return h, nil
}

func ownedByMe(e fs.DirEntry) bool {
	info, err := e.Info()
	if err != nil {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

// locked runs fn holding the claims directory's lock, creating the directory
// (sticky and world-writable) on first use.
func (c *Claims) locked(fn func() error) error {
	if err := c.ensureDir(); err != nil {
		return err
	}
	lockPath := filepath.Join(c.Dir, ".lock")
	// Read-only is enough for flock, and opening another user's file with
	// O_CREAT is refused in sticky directories (fs.protected_regular).
	f, err := os.Open(lockPath)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(lockPath, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			f, err = os.Open(lockPath)
		} else if err == nil {
			f.Chmod(0o644)
		}
	}
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

func (c *Claims) ensureDir() error {
	err := os.Mkdir(c.Dir, 0o777)
	if err == nil {
		if err := os.Chmod(c.Dir, 0o777|os.ModeSticky); err != nil {
			return fmt.Errorf("create GPU claims directory: %w", err)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create GPU claims directory: %w", err)
	}
	info, err := os.Lstat(c.Dir)
	if err != nil {
		return fmt.Errorf("GPU claims directory: %w", err)
	}
	st, _ := info.Sys().(*syscall.Stat_t)
	mine := st != nil && int(st.Uid) == os.Getuid()
	shared := info.Mode().Perm()&0o002 != 0 && info.Mode()&os.ModeSticky != 0
	if !info.IsDir() || (!mine && !shared) {
		return fmt.Errorf("GPU claims directory %s is not a directory that every user may add claims to (want mode 1777): remove it, or set %s", c.Dir, ClaimsDirEnv)
	}
	return nil
}
