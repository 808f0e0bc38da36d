package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A cluster started with `up --rollover` is a sequence of heads, its
// generations (1, 2, ...). Each generation is published once, in a file of
// its own that never changes: a reader over NFS may see a stale directory
// listing, but never a stale or torn generation. A cluster made without
// --rollover (or by a sraybatch before generations) has no such files, and
// its head.json is its only head.
const (
	generationsDir = "generations" // <g>.json, written once by generation g's head
	handoversDir   = "handovers"   // <g>.json, written by generation g's head as it hands over
)

// ErrGenerationTaken is returned by PublishGeneration when that generation's
// file exists already: another head published it first, and this one must
// not serve.
var ErrGenerationTaken = errors.New("generation already published")

// GenerationHow says how a generation's head came to be.
type GenerationHow string

const (
	// GenerationFirst: the head job `up` submitted.
	GenerationFirst GenerationHow = "first"
	// GenerationPromoted: a worker job of the previous generation restarted
	// its Ray node as the head, in its own allocation.
	GenerationPromoted GenerationHow = "promoted"
	// GenerationSubmitted: a successor head job submitted by the previous head.
	GenerationSubmitted GenerationHow = "submitted"
)

// Generation is one published head generation: the head as head.json
// describes it (its Generation and TokenFile set), how it came to be, and
// the head job it took over from.
type Generation struct {
	HeadInfo
	How             GenerationHow `json:"how"`
	PreviousHeadJob string        `json:"previous_head_job,omitempty"`
}

// TokenFileOf is the base name of generation g's Ray token in the cluster
// directory: `token` (written by `up`) for the first, token.g<g> after. A
// fresh token per generation fences the generations apart: a node that
// still holds g's token cannot register with g+1's GCS, nor the reverse.
func TokenFileOf(g int) string {
	if g <= 1 {
		return tokenFile
	}
	return tokenFile + ".g" + strconv.Itoa(g)
}

// TokenPathOf is the path of the Ray token of the head h: its generation's
// token, or the cluster's only one for a head without generations.
func (d Dir) TokenPathOf(h HeadInfo) string {
	if h.TokenFile == "" {
		return d.TokenPath()
	}
	return d.file(filepath.Base(h.TokenFile))
}

// NewGenerationToken writes generation g's fresh Ray token (0600) unless
// it exists, and returns its path. The first generation's is `up`'s.
func (d Dir) NewGenerationToken(g int) (string, error) {
	path := d.file(TokenFileOf(g))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	token, err := newToken()
	if err != nil {
		return "", err
	}
	if err := writeOnce(path, []byte(token+"\n")); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("write generation %d's token: %w", g, err)
	}
	return path, nil
}

// PublishGeneration makes g the cluster's current head. It fails with
// ErrGenerationTaken when generation g.Generation was published already,
// so each generation has exactly one head whoever races for it. The first
// generation is also written to head.json, for readers of the landed layout.
func (d Dir) PublishGeneration(g Generation) error {
	if g.Generation < 1 {
		return fmt.Errorf("publish generation %d: generations count from 1", g.Generation)
	}
	g.SchemaVersion = SchemaVersion
	g.TokenFile = TokenFileOf(g.Generation)
	if err := os.MkdirAll(d.file(generationsDir), 0o700); err != nil {
		return fmt.Errorf("publish generation %d: %w", g.Generation, err)
	}
	b, err := marshalJSON(g)
	if err != nil {
		return err
	}
	err = writeOnce(d.generationPath(g.Generation), b)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("publish generation %d: %w", g.Generation, ErrGenerationTaken)
	}
	if err != nil {
		return fmt.Errorf("publish generation %d: %w", g.Generation, err)
	}
	if g.Generation == 1 {
		return d.WriteHead(g.HeadInfo)
	}
	return nil
}

func (d Dir) generationPath(g int) string {
	return filepath.Join(d.Path, generationsDir, strconv.Itoa(g)+".json")
}

// Generations lists the published generations' numbers, ascending; none
// for a cluster without generations.
func (d Dir) Generations() ([]int, error) {
	entries, err := os.ReadDir(d.file(generationsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list generations: %w", err)
	}
	var gens []int
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if g, err := strconv.Atoi(name); ok && err == nil && g > 0 {
			gens = append(gens, g)
		}
	}
	sort.Ints(gens)
	return gens, nil
}

// Generation reads one published generation; ok is false when it is not.
func (d Dir) Generation(g int) (gen Generation, ok bool, err error) {
	err = ReadJSON(d.generationPath(g), &gen)
	if errors.Is(err, fs.ErrNotExist) {
		return gen, false, nil
	}
	return gen, err == nil, err
}

// LatestGeneration reads the newest published generation; ok is false for
// a cluster without generations (or before its first head published).
func (d Dir) LatestGeneration() (gen Generation, ok bool, err error) {
	gens, err := d.Generations()
	if err != nil || len(gens) == 0 {
		return gen, false, err
	}
	return d.Generation(gens[len(gens)-1])
}

// History reads every published generation and every handover record,
// each ascending: the cluster's heads, for status, events and the report.
// None for a cluster without generations.
func (d Dir) History() (gens []Generation, hs []Handover, err error) {
	nums, err := d.Generations()
	if err != nil {
		return nil, nil, err
	}
	for _, g := range nums {
		if gen, ok, err := d.Generation(g); err != nil {
			return nil, nil, err
		} else if ok {
			gens = append(gens, gen)
		}
		if h, ok, err := d.Handover(g); err != nil {
			return nil, nil, err
		} else if ok {
			hs = append(hs, h)
		}
	}
	return gens, hs, nil
}

// Handover is generation g's head handing the cluster over, written by
// that head only: first as it starts, again once sealed. The successor
// publishes generation g+1 only after Sealed is set (or g's head is known
// lost), so two heads never both accept nodes or run the autoscaler.
type Handover struct {
	SchemaVersion int           `json:"schema_version"`
	Generation    int           `json:"generation"`
	HeadJob       string        `json:"head_job"`
	Started       time.Time     `json:"started"`
	Why           string        `json:"why"`
	How           GenerationHow `json:"how"`
	// Successor is the job that becomes generation g+1's head: a worker
	// being promoted, or the successor head job submitted.
	Successor string `json:"successor"`
	// Deadline is when g's head job ends (its time limit, or SLURM's kill).
	Deadline time.Time `json:"deadline"`
	// Sealed is when g's head stopped accepting: its autoscaler and its Ray
	// stopped. Nil until then.
	Sealed *time.Time `json:"sealed,omitempty"`
	// LastStep is the driver's last step on generation g (-1: unknown).
	LastStep int `json:"last_step"`
	// Nodes are the nodes g's GCS knew at its last look before the seal,
	// with when each registered: the fence's evidence (LateJoins).
	Nodes []NodeStart `json:"nodes,omitempty"`
}

// WriteHandover replaces generation h.Generation's handover record.
func (d Dir) WriteHandover(h Handover) error {
	h.SchemaVersion = SchemaVersion
	if err := os.MkdirAll(d.file(handoversDir), 0o700); err != nil {
		return fmt.Errorf("record handover: %w", err)
	}
	return WriteJSON(d.handoverPath(h.Generation), h)
}

// Handover reads generation g's handover record; ok is false when g has
// not started handing over.
func (d Dir) Handover(g int) (h Handover, ok bool, err error) {
	err = ReadJSON(d.handoverPath(g), &h)
	if errors.Is(err, fs.ErrNotExist) {
		return h, false, nil
	}
	return h, err == nil, err
}

func (d Dir) handoverPath(g int) string {
	return filepath.Join(d.Path, handoversDir, strconv.Itoa(g)+".json")
}

// writeOnce writes data (0600) to path unless path exists: a synced temp
// file hard-linked to its name, which fails with fs.ErrExist rather than
// replace (rename would). Hard links are atomic on NFS and Lustre alike.
func writeOnce(path string, data []byte) error {
	f, err := writeTemp(path, data, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(f.Name(), path)
	}
	return err
}

// NodeStart is a Ray node as a generation's GCS knows it.
type NodeStart struct {
	Job        string    `json:"job"`
	Registered time.Time `json:"registered"`
}

// LateJoins are the nodes that registered with generation g's GCS after
// generation g+1 was published (at next): the fence failed for each.
func LateJoins(nodes []NodeStart, next time.Time) []string {
	var late []string
	for _, n := range nodes {
		if n.Registered.After(next) {
			late = append(late, n.Job)
		}
	}
	return late
}
