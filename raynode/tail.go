package raynode

import (
	"strings"
	"sync"

	"github.com/sraybatch/sraybatch/internal/oneline"
)

// tailBuffer keeps the last lines written to it, for error reasons.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  string
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	parts := strings.Split(t.part+string(p), "\n")
	t.part = parts[len(parts)-1]
	for _, l := range parts[:len(parts)-1] {
		if strings.TrimSpace(l) != "" {
			t.lines = append(t.lines, l)
		}
	}
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
	return len(p), nil
}

// String returns the last few lines joined on one line.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if t.part != "" {
		lines = append(lines[:len(lines):len(lines)], t.part)
	}
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return oneline.Of(strings.Join(lines, " | "))
}
