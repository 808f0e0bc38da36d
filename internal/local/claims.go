package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/gpu"
)

// DefaultClaimsBase is where the GPU claims of every user's sraybatch on the
// host live: each user has a directory of their own, DefaultClaimsBase-<uid>
// (e.g. /tmp/sraybatch-gpu-claims-1000), mode 0755, that only they can write
// and everyone reads.
const DefaultClaimsBase = "/tmp/sraybatch-gpu-claims"

// ClaimsBaseEnv overrides DefaultClaimsBase (tests; hosts with a private
// /tmp). It names the base path, not a directory: SRAYBATCH_GPU_CLAIMS=/tmp/x
// puts a user's claims in /tmp/x-<uid>. Every user of the host must agree on
// it, and its parent directory must let every user create a directory (like
// /tmp: mode 1777).
const ClaimsBaseEnv = "SRAYBATCH_GPU_CLAIMS"

// Claims hands out the host's GPUs to local nodes, one node per GPU set. A
// GPU is free when no live sraybatch node (of any cluster, any user) claims
// it and the driver shows no compute process of anyone else on it.
//
// Each user writes claims only in a directory of their own, Base-<uid>,
// created by them with mode 0755 and trusted only while lstat shows it is a
// real directory owned by <uid> and writable by nobody else. When that name
// is taken by something that fails the check (another user can create it
// first), the user's claims go to Base-<uid>-<random> instead; readers take
// every Base-<uid> and Base-<uid>-* directory that passes the check for the
// uid in its name, and ignore all others. So nobody can remove, overwrite,
// forge, block or redirect another user's claims, and every user sees all of
// them.
//
// Each claim is one file, <gpu>.<uid>.claim, created with O_EXCL|O_NOFOLLOW
// and naming the holding process by pid and start time, so a claim outlives
// neither its process nor a recycled pid: such a claim is simply not live,
// and its owner's next claim removes it (others ignore it). A user's own
// processes serialise their read-modify-writes with an flock of .lock in
// that user's directory.
//
// Across users nothing is shared, so two claimers may take the same GPU at
// once. A new claim is first written pending; its claimer then reads every
// claim on the GPU. It backs off when another live claim there is no longer
// pending, or is pending but started earlier (process start time, then uid,
// then pid: the earliest holder wins); it waits while the only rivals are
// pending and started later (each will see this claim and back off, or
// commit first and make this one back off); and it commits (rewrites the
// claim, no longer pending) once it is alone. Of two claimers at least one
// sees the other's claim, so never both commit, and a committed claim is
// never taken over. A claimer that backs off tries the next free GPU.
type Claims struct {
	// Base is the path every user's claims directory is named after
	// (Base-<uid>); empty: DefaultClaimsBase.
	Base string
	// Inventory lists the host's GPUs (gpu.System in production; a
	// fixed list in tests).
	Inventory func() (gpu.Inventory, error)

	// own, when set, is the directory this user's claims go to instead
	// of the one ownDir picks (tests: claimers that share no lock). It
	// must pass the same checks.
	own string
}

// SystemClaims is the host's claims over the GPUs NVML reports, narrowed to
// the login shell's CUDA_VISIBLE_DEVICES when set; without NVML, the GPUs that
// variable names; with neither, none.
func SystemClaims() *Claims {
	base := os.Getenv(ClaimsBaseEnv)
	if base == "" {
		base = DefaultClaimsBase
	}
	return &Claims{Base: base, Inventory: func() (gpu.Inventory, error) {
		return gpu.System(os.Getenv, io.Discard).Inventory()
	}}
}

// base is the base path the claims directories are named after.
func (c *Claims) base() string {
	if c.Base != "" {
		return filepath.Clean(c.Base)
	}
	return DefaultClaimsBase
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

// GPU is one GPU of the host as the claims see it.
type GPU struct {
	Info gpu.Info
	// Holder is the live claim on it; nil when unclaimed. A claim still
	// being settled counts: its claimer may yet win.
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

// settleWait bounds how long a claimer waits for later-started rivals on
// the same GPU to back off or commit; past it, it backs off itself.
var settleWait = 5 * time.Second

// acquireRounds bounds how often Acquire starts over when races lost it
// GPUs that a fresh look shows free again.
const acquireRounds = 3

// State lists the host's GPUs and who holds them.
func (c *Claims) State() ([]GPU, error) {
	own, err := c.ownDir()
	if err != nil {
		return nil, err
	}
	var gpus []GPU
	err = lockDir(own, func() error {
		var err error
		gpus, _, err = c.scan(own)
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
	own, err := c.ownDir()
	if err != nil {
		return nil, err
	}
	var got []Claimed
	err = lockDir(own, func() error {
		for round := 1; ; round++ {
			taken, lost, err := c.takeFree(own, n, h)
			if err != nil || !lost {
				got = taken
				return err
			}
			if round == acquireRounds {
				gpus, source, err := c.scan(own)
				if err != nil {
					return err
				}
				return noGPUError(n, gpus, source)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// takeFree takes n of the GPUs a fresh scan shows free, all or none. lost
// is true when races lost it too many of them: what it won is given back,
// and a new scan may show others free. Call it holding own's lock.
func (c *Claims) takeFree(own string, n int, h Holder) (got []Claimed, lost bool, err error) {
	gpus, source, err := c.scan(own)
	if err != nil {
		return nil, false, err
	}
	var free []GPU
	for _, g := range gpus {
		if g.Free() {
			free = append(free, g)
		}
	}
	if len(free) < n {
		return nil, false, noGPUError(n, gpus, source)
	}
	for _, g := range free {
		if len(got) == n {
			return got, false, nil
		}
		cl, won, err := c.take(own, g, h)
		if err != nil {
			removeAll(got)
			return nil, false, err
		}
		if won {
			got = append(got, cl)
		}
	}
	if len(got) == n {
		return got, false, nil
	}
	removeAll(got)
	return nil, true, nil
}

// Hand passes claims to another holder (the node process that will use the
// GPUs), replacing each file in one rename so no reader sees it unheld.
func (c *Claims) Hand(cs []Claimed, h Holder) error {
	return forEachDir(cs, func(dir string, cs []Claimed) error {
		for _, cl := range cs {
			if err := writeClaim(cl.Path, claimFile{Holder: h}); err != nil {
				return fmt.Errorf("hand over claim on %s: %w", cl.Name, err)
			}
		}
		return nil
	})
}

// Release removes the claims that p still holds; claims someone else has
// taken over since are left alone.
func (c *Claims) Release(cs []Claimed, p Proc) {
	forEachDir(cs, func(dir string, cs []Claimed) error {
		for _, cl := range cs {
			if f, err := readClaim(cl.Path, os.Geteuid()); err == nil && f.Proc == p {
				os.Remove(cl.Path)
			}
		}
		return nil
	})
}

// forEachDir runs fn on the claims of each of this user's directories that
// cs lie in, under that directory's lock.
func forEachDir(cs []Claimed, fn func(dir string, cs []Claimed) error) error {
	byDir := map[string][]Claimed{}
	var dirs []string
	for _, cl := range cs {
		dir := filepath.Dir(cl.Path)
		if _, ok := byDir[dir]; !ok {
			dirs = append(dirs, dir)
		}
		byDir[dir] = append(byDir[dir], cl)
	}
	for _, dir := range dirs {
		if why := checkDir(dir, os.Geteuid()); why != "" {
			return fmt.Errorf("GPU claims directory %s %s", dir, why)
		}
		if err := lockDir(dir, func() error { return fn(dir, byDir[dir]) }); err != nil {
			return err
		}
	}
	return nil
}

func removeAll(cs []Claimed) {
	for _, cl := range cs {
		os.Remove(cl.Path)
	}
}

// claim is one live claim as read from its file.
type claim struct {
	claimFile
	path string
	// uid owns the claim's directory and file; it, not the file's word,
	// says whose claim it is.
	uid int
}

// before reports whether a's holder started before b's: earlier process
// start, then lower uid, then lower pid (then path, so the order is total).
func (a claim) before(b claim) bool {
	if a.Start != b.Start {
		return a.Start < b.Start
	}
	if a.uid != b.uid {
		return a.uid < b.uid
	}
	if a.PID != b.PID {
		return a.PID < b.PID
	}
	return a.path < b.path
}

// take claims GPU g for h in own: a pending claim first, then, once no
// rival on the GPU is left (settle), the committed one. won is false when a
// rival wins; the pending claim is gone then.
func (c *Claims) take(own string, g GPU, h Holder) (cl Claimed, won bool, err error) {
	key := claimKey(g.Info)
	path := filepath.Join(own, key+"."+strconv.Itoa(os.Geteuid())+".claim")
	if err := createClaim(path, claimFile{Holder: h, Pending: true}); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Claimed{}, false, nil // taken by one of my own since the scan
		}
		return Claimed{}, false, err
	}
	me := claim{claimFile: claimFile{Holder: h, Pending: true}, path: path, uid: os.Geteuid()}
	if !c.settle(key, me) {
		os.Remove(path)
		return Claimed{}, false, nil
	}
	if err := writeClaim(path, claimFile{Holder: h}); err != nil {
		os.Remove(path)
		return Claimed{}, false, fmt.Errorf("claim %s: %w", g.Name(), err)
	}
	return Claimed{ID: g.Info.ID, Name: g.Name(), Path: path}, true, nil
}

// settle decides the race for the GPU of key between me (written pending)
// and whoever else claims it: true when me may commit.
func (c *Claims) settle(key string, me claim) bool {
	deadline := time.Now().Add(settleWait)
	delay := time.Millisecond
	for {
		rivals := false
		for _, r := range c.read("", key)[key] {
			if r.path == me.path {
				continue
			}
			if !r.Pending || r.before(me) {
				return false
			}
			rivals = true
		}
		if !rivals {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// scan reads the inventory and the live claims, and removes this user's
// dead claims in own (others' dead claims are ignored: they are not ours to
// remove). It also returns where the inventory came from. Call it holding
// own's lock.
func (c *Claims) scan(own string) ([]GPU, string, error) {
	inv, err := c.Inventory()
	if err != nil {
		return nil, "", fmt.Errorf("list this host's GPUs: %w", err)
	}
	live := c.read(own, "")
	gpus := make([]GPU, len(inv.GPUs))
	for i, info := range inv.GPUs {
		g := GPU{Info: info}
		if cs := live[claimKey(info)]; len(cs) > 0 {
			// A settled claim over a pending one; the earliest of either.
			best := cs[0]
			for _, cl := range cs[1:] {
				if (best.Pending && !cl.Pending) || (best.Pending == cl.Pending && cl.before(best)) {
					best = cl
				}
			}
			g.Holder = &best.Holder
		} else {
			for _, p := range info.Processes {
				g.Foreign = append(g.Foreign, p.PID)
			}
		}
		gpus[i] = g
	}
	return gpus, inv.Source, nil
}

// read returns the live claims of every user, by GPU key (only those of
// key when it is set). Dead claims, and leftovers of interrupted writes, in
// clean (this user's directory, whose lock the caller holds) are removed;
// anything that fails the checks is ignored.
func (c *Claims) read(clean, key string) map[string][]claim {
	live := map[string][]claim{}
	for _, d := range c.dirs() {
		entries, err := os.ReadDir(d.path)
		if err != nil {
			continue
		}
		mine := d.path == clean
		for _, e := range entries {
			name := e.Name()
			path := filepath.Join(d.path, name)
			if mine && strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp") {
				os.Remove(path) // a write cut short: every writer holds the lock
				continue
			}
			if !strings.HasSuffix(name, ".claim") || strings.HasPrefix(name, ".") {
				continue
			}
			k, _, _ := strings.Cut(name, ".")
			if key != "" && k != key {
				continue
			}
			f, err := readClaim(path, d.uid)
			if err == nil && f.Alive() {
				f.UID = d.uid
				live[k] = append(live[k], claim{claimFile: f, path: path, uid: d.uid})
				continue
			}
			if mine {
				os.Remove(path) // dead, or not a claim: it would only block O_EXCL
			}
		}
	}
	return live
}
