// Package follow reads a file on from where the last read stopped, as
// `tail -f` does, for `logs -f`: each byte is given once, whether the file
// grows in place (a job's output) or is replaced by a newer copy that holds
// its newest bytes (the supervisor's copies of the Ray logs).
package follow

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// File reads one file on from where it stopped. A job's output only grows;
// a copy of a Ray log is replaced by a newer one, which holds the log's
// newest bytes: the last bytes already given then mark where to go on.
type File struct {
	path   string
	offset int64
	// shown are the file's bytes just before offset (up to anchorSize).
	shown []byte
}

// New follows the file at path; it need not exist yet.
func New(path string) *File { return &File{path: path} }

// anchorSize is how many of the last bytes given are kept to find the place
// again in a replaced copy.
const anchorSize = 1 << 10

// Gap marks a gap: a replaced copy no longer holds the lines after the last
// given (more than its cap came in between).
const Gap = "[sraybatch logs: lines in between were not kept in the copy]\n"

// Next returns what is new since the last call: all of the file the first
// time, nothing while it does not exist.
func (f *File) Next() ([]byte, error) {
	in, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // not written yet
	}
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer in.Close()
	if f.continues(in) {
		if _, err := in.Seek(f.offset, io.SeekStart); err != nil {
			return nil, fmt.Errorf("read log %s: %w", f.path, err)
		}
		data, err := io.ReadAll(in)
		if err != nil {
			return nil, fmt.Errorf("read log %s: %w", f.path, err)
		}
		f.offset += int64(len(data))
		f.remember(data)
		return data, nil
	}
	all, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("read log %s: %w", f.path, err)
	}
	data := afterShown(all, f.shown)
	f.offset, f.shown = int64(len(all)), nil
	f.remember(all)
	return data, nil
}

// remember keeps the last anchorSize bytes of the file read so far.
func (f *File) remember(data []byte) {
	f.shown = append(f.shown, data...)
	if len(f.shown) > anchorSize {
		f.shown = append([]byte(nil), f.shown[len(f.shown)-anchorSize:]...)
	}
}

// continues reports whether the file still holds, just before the offset
// reached, the bytes read last: it has only grown since.
func (f *File) continues(in *os.File) bool {
	if f.offset == 0 {
		return true
	}
	want := f.shown
	if int64(len(want)) > f.offset {
		want = want[int64(len(want))-f.offset:]
	}
	got := make([]byte, len(want))
	n, _ := in.ReadAt(got, f.offset-int64(len(want)))
	return n == len(want) && bytes.Equal(got, want)
}

// minOverlap is the least of the bytes already shown that a replaced copy
// must start with to count as going on from them: fewer match by chance.
const minOverlap = 8

// afterShown is what a replaced copy holds after the bytes already shown:
// after them where it holds them all, after their end where it starts
// within them (its window moved into them), else all of it, marked as a gap.
func afterShown(all, shown []byte) []byte {
	if len(shown) == 0 {
		return all
	}
	if i := bytes.LastIndex(all, shown); i >= 0 {
		return all[i+len(shown):]
	}
	for k := len(shown) - 1; k >= minOverlap; k-- {
		if bytes.HasPrefix(all, shown[len(shown)-k:]) {
			return all[k:]
		}
	}
	return append([]byte(Gap), all...)
}
