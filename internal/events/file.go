package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// Append appends e to the event file at path as one JSON line,
// {"event": name, "ts": …, fields…}, with a single write, so concurrent
// readers see whole lines; the file is the user's alone (0600).
func Append(path string, e FileEvent) error {
	line, err := marshal(e)
	if err != nil {
		return fmt.Errorf("event for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("event log %s: %w", path, err)
	}
	return f.Close()
}

// marshal is e's line: its name first, then its struct's fields (the
// stamp's ts among them).
func marshal(e FileEvent) ([]byte, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	name, err := json.Marshal(e.Name())
	if err != nil {
		return nil, err
	}
	line := append([]byte(`{"event":`), name...)
	if len(body) > len("{}") {
		line = append(line, ',')
	}
	return append(line, body[1:]...), nil
}

// Event is one line of any event file: its time, its name, and the line
// itself for the reader that knows the event's struct.
type Event struct {
	TS   float64
	Name string
	line json.RawMessage
}

// Time is the event's ts as a time.
func (e Event) Time() time.Time { return UnixSeconds(e.TS) }

// Decode unmarshals the line into v (a *JobState, say); fields v does not
// know are ignored. A line malformed past its ts and event fails here.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.line, v); err != nil {
		return fmt.Errorf("%s event: %w", e.Name, err)
	}
	return nil
}

// Fields are all the line's fields (ts and event included), as JSON.
func (e Event) Fields() (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(e.line, &fields); err != nil {
		return nil, fmt.Errorf("%s event: %w", e.Name, err)
	}
	return fields, nil
}

// parse is line as an event: a JSON object with a numeric ts and a
// non-empty event name; anything else is no event. A line that begins with
// its ts and event (both writers write them first) has only those read
// here, and the rest is decoded once, by Decode or Fields, which fail on a
// line malformed past its head: a long run's file is decoded once, not twice.
func parse(line []byte) (Event, bool) {
	if ts, name, ok := head(line); ok {
		return Event{TS: ts, Name: name, line: line}, true
	}
	var h struct {
		TS    *float64 `json:"ts"`
		Event string   `json:"event"`
	}
	if json.Unmarshal(line, &h) != nil || h.TS == nil || h.Event == "" {
		return Event{}, false
	}
	return Event{TS: *h.TS, Name: h.Event, line: line}, true
}

// head reads the ts and event of a line whose first two members they are,
// names without escapes; ok is false for any other line.
func head(line []byte) (ts float64, name string, ok bool) {
	s := bytes.TrimLeft(line, " \t")
	if len(s) == 0 || s[0] != '{' {
		return 0, "", false
	}
	s = s[1:]
	haveTS := false
	for range 2 {
		var key string
		if key, s, ok = plainString(bytes.TrimLeft(s, " \t")); !ok {
			return 0, "", false
		}
		if s = bytes.TrimLeft(s, " \t"); len(s) == 0 || s[0] != ':' {
			return 0, "", false
		}
		s = bytes.TrimLeft(s[1:], " \t")
		switch key {
		case "ts":
			n := bytes.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune("0123456789.eE+-", r) })
			if n <= 0 {
				return 0, "", false
			}
			f, err := strconv.ParseFloat(string(s[:n]), 64)
			if err != nil {
				return 0, "", false
			}
			ts, haveTS, s = f, true, s[n:]
		case "event":
			if name, s, ok = plainString(s); !ok {
				return 0, "", false
			}
		default:
			return 0, "", false
		}
		if s = bytes.TrimLeft(s, " \t"); len(s) == 0 || (s[0] != ',' && s[0] != '}') {
			return 0, "", false
		}
		s = s[1:]
	}
	return ts, name, haveTS && name != ""
}

// plainString reads a JSON string without escapes at the start of s.
func plainString(s []byte) (string, []byte, bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", nil, false
	}
	end := bytes.IndexByte(s[1:], '"')
	if end < 0 || bytes.IndexByte(s[1:1+end], '\\') >= 0 {
		return "", nil, false
	}
	return string(s[1 : 1+end]), s[2+end:], true
}

// Reader reads one event file on from where its last Read stopped, so a
// follower (`sraybatch events -f`, the head's 5 s observer, `status
// --watch`) never rereads hours of lines. It is the only reader of event
// files: a whole read is a fresh Reader's first Read.
type Reader struct {
	path   string
	offset int64       // after the last whole line read
	file   os.FileInfo // the file read so far, to notice it replaced
}

// NewReader reads the event file at path from its start.
func NewReader(path string) *Reader { return &Reader{path: path} }

// ReadAll reads a whole event file.
func ReadAll(path string) ([]Event, error) {
	evs, _, err := NewReader(path).Read()
	return evs, err
}

// Offset is how far the file has been read: the end of its last whole line.
func (r *Reader) Offset() int64 { return r.offset }

// Read returns the events appended since the last read; restarted reports
// that the file is not the one read so far (see Fold).
func (r *Reader) Read() (evs []Event, restarted bool, err error) {
	err = r.Fold(func() { evs, restarted = nil, true }, func(e Event) { evs = append(evs, e) })
	return evs, restarted, err
}

// Fold calls fold with each event appended since the last read, in order,
// so a long file is never held whole. A missing file has none yet. A last
// line without its newline is being written and is left for the next read;
// other lines that are not an event are skipped, so one bad writer cannot
// hide the rest (a line malformed past its ts and event fails its Decode or
// Fields, and its reader skips it then). A file that is not the one read
// so far (shorter: truncated; another file: replaced) is read again from
// its start, after a call of restart: what the caller folded from it is
// stale.
func (r *Reader) Fold(restart func(), fold func(Event)) error {
	f, err := os.Open(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read events %s: %w", r.path, err)
	}
	if st.Size() < r.offset || (r.file != nil && !os.SameFile(r.file, st)) {
		r.offset = 0
		restart()
	}
	r.file = st
	if _, err := f.Seek(r.offset, io.SeekStart); err != nil {
		return fmt.Errorf("read events %s: %w", r.path, err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) { // nothing more, or a line still being written
			return nil
		}
		if err != nil {
			return fmt.Errorf("read events %s: %w", r.path, err)
		}
		r.offset += int64(len(line))
		if e, ok := parse(line); ok {
			fold(e)
		}
	}
}
