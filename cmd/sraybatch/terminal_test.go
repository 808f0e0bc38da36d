//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal: ptmx reads what is written to the
// terminal side, pts. The ioctls go through SyscallConn, as Fd would turn
// ptmx blocking and defeat its read deadline.
func openPTY(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	conn, err := ptmx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var errno syscall.Errno
	err = conn.Control(func(fd uintptr) {
		var unlock int32
		if _, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno == 0 {
			_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n)))
		}
	})
	if err != nil || errno != 0 {
		t.Fatalf("set up pty: %v %v", err, errno)
	}
	pts, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pty: %v", err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptmx, pts
}

// /dev/null is a character device, and used to count as a terminal: output
// redirected there got the styled table.
func TestIsTerminal(t *testing.T) {
	t.Parallel()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for name, f := range map[string]*os.File{"/dev/null": devNull, "a pipe": w, "a file": file} {
		if isTerminal(f) {
			t.Errorf("isTerminal(%s) = true", name)
		}
	}
	if _, pty := openPTY(t); !isTerminal(pty) {
		t.Error("isTerminal(a pty) = false")
	}
}

func TestUseColor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tty  bool
		env  map[string]string
		want bool
	}{
		{true, nil, true},
		{false, nil, false},
		{true, map[string]string{"NO_COLOR": "1"}, false},
		{true, map[string]string{"NO_COLOR": "0"}, false}, // any non-empty value (no-color.org)
		{true, map[string]string{"NO_COLOR": ""}, true},
		{true, map[string]string{"TERM": "dumb"}, false},
		{true, map[string]string{"TERM": "xterm-256color"}, true},
	}
	for _, tt := range tests {
		if got := useColor(tt.tty, func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("useColor(%v, %v) = %v, want %v", tt.tty, tt.env, got, tt.want)
		}
	}
}
