package local

// Claim-file I/O: one file per claim, created and replaced without following
// a symlink, read only when its owner is its directory's.

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"

	"github.com/sraybatch/sraybatch/internal/gpu"
)

// claimFile is what a claim file holds: its holder, and whether its claimer
// is still settling a race for the GPU (files without the field are settled).
type claimFile struct {
	Holder
	Pending bool `json:"pending,omitempty"`
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

// createClaim writes a new claim file, failing (fs.ErrExist) when the name
// is taken, whatever by: a symlink there is neither followed nor replaced.
func createClaim(path string, f claimFile) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := writeNew(path, append(b, '\n')); err != nil {
		return fmt.Errorf("claim GPU: %w", err)
	}
	return nil
}

// writeClaim replaces a claim file of this user's with one naming f, in one
// rename.
func writeClaim(path string, f claimFile) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+randomSuffix()+".tmp")
	if err := writeNew(tmp, append(b, '\n')); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeNew creates path (never through a symlink) with mode 0644 whatever
// the umask, so other users can read it.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	err = f.Chmod(0o644)
	if err == nil {
		_, err = f.Write(b)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// maxClaimSize bounds what is read of a claim file.
const maxClaimSize = 64 << 10

// readClaim reads the claim file at path, which must be a regular file
// owned by uid (the owner of its directory). It follows no symlink and
// never blocks on a FIFO.
func readClaim(path string, uid int) (claimFile, error) {
	var f claimFile
	info, err := os.Lstat(path)
	if err != nil {
		return f, err
	}
	if why := checkFileInfo(info, uid); why != "" {
		return f, fmt.Errorf("claim %s %s", path, why)
	}
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return f, err
	}
	defer file.Close()
	opened, err := file.Stat()
	if err != nil {
		return f, err
	}
	if why := checkFileInfo(opened, uid); why != "" || !os.SameFile(info, opened) {
		return f, fmt.Errorf("claim %s changed while read", path)
	}
	b, err := io.ReadAll(io.LimitReader(file, maxClaimSize))
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("claim %s: %w", path, err)
	}
	return f, nil
}

func checkFileInfo(info fs.FileInfo, uid int) string {
	if !info.Mode().IsRegular() {
		return "is not a regular file"
	}
	if st, ok := info.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
		return "is not owned by uid " + strconv.Itoa(uid)
	}
	return ""
}
