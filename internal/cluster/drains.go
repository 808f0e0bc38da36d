package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteDrainNotice records that Ray accepted draining a worker's node.
func (d Dir) WriteDrainNotice(n DrainNotice) error {
	n.SchemaVersion = SchemaVersion
	if err := os.MkdirAll(d.file(drainsDir), 0o700); err != nil {
		return fmt.Errorf("record drain: %w", err)
	}
	return WriteJSON(filepath.Join(d.Path, drainsDir, n.Job+".json"), n)
}

// DrainNotice reads a worker's drain notice; ok is false when none was written.
func (d Dir) DrainNotice(job string) (n DrainNotice, ok bool, err error) {
	err = ReadJSON(filepath.Join(d.Path, drainsDir, job+".json"), &n)
	if errors.Is(err, fs.ErrNotExist) {
		return n, false, nil
	}
	return n, err == nil, err
}

// DrainNotices reads every worker's drain notice, by job key: status tells
// a node Ray drained on the head's request, still leaving, from one lost.
func (d Dir) DrainNotices() (map[string]DrainNotice, error) {
	list, err := ReadJSONDir[DrainNotice](filepath.Join(d.Path, drainsDir))
	if errors.Is(err, fs.ErrNotExist) { // a cluster that never drained a worker
		return map[string]DrainNotice{}, nil
	}
	out := make(map[string]DrainNotice, len(list))
	for _, n := range list {
		out[n.Job] = n
	}
	return out, err
}
