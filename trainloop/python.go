// Package trainloop is the training side of sraybatch: the driver job's
// Python package (the elastic actor pool and the demo loop, embedded here and
// installed into each cluster) and a driver's progress, folded from the
// events it writes (internal/events reads them).
package trainloop

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

//go:embed python/sraybatch_trainloop/*.py
var pythonFiles embed.FS

// PythonPackage is the module a driver imports (`python -m sraybatch_trainloop.demo`).
const PythonPackage = "sraybatch_trainloop"

// InstallPython writes the embedded package into dir (the driver's
// PYTHONPATH), each file atomically, so a running driver never reads a torn file.
func InstallPython(dir string) error {
	return fs.WalkDir(pythonFiles, "python", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel("python", path)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := pythonFiles.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read embedded %s: %w", path, err)
		}
		return cluster.WriteFileAtomic(dst, b, 0o600)
	})
}
