package report

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/timeline"
)

// A rollover cluster's head generations on the page: a band per generation
// above the job rows (from its publication to the next's), and its
// handovers listed under the GPU-hours. A cluster without generations
// shows neither, and its page is as it was.

// Generation is one head generation: its head job and how that head came
// to be (first, promoted, submitted), from its publication to the next
// generation's (the axis' end for the last).
type Generation struct {
	Generation   int
	HeadJob, How string
	From, To     time.Time
}

// Handover is one handover as the summary lists it; a nil figure is unknown.
type Handover struct {
	Generation                 int
	OldHead, NewHead, How, Why string
	At                         time.Time
	SealedS, PublishedS, GapS  *float64
	StepsLost                  *int
}

// generationUp is a head_up of a rollover cluster's generation.
func (e *evidence) generationUp(ev timeline.Event, at time.Time) {
	var up events.HeadUp
	if ev.Decode(&up) == nil && up.Generation > 0 {
		e.generations = append(e.generations, Generation{Generation: up.Generation, HeadJob: ev.Job, How: up.How, From: at})
	}
}

func (e *evidence) handover(ev timeline.Event, at time.Time) {
	var h events.Handover
	if ev.Decode(&h) == nil {
		e.handovers = append(e.handovers, Handover{Generation: h.Generation, OldHead: ev.Job, NewHead: h.Successor, How: h.How, Why: h.Reason,
			At: at, SealedS: h.SealedS, PublishedS: h.PublishedS, GapS: h.GapS, StepsLost: h.StepsLost})
	}
}

// bands are the generations in order, each until the next one's
// publication, the last until end.
func bands(gens []Generation, end time.Time) []Generation {
	out := slices.Clone(gens)
	slices.SortStableFunc(out, func(a, b Generation) int { return a.Generation - b.Generation })
	for i := range out {
		out[i].To = end
		if i+1 < len(out) {
			out[i].To = out[i+1].From
		}
		if out[i].To.Before(out[i].From) {
			out[i].To = out[i].From
		}
	}
	return out
}

// generationBand is one band of the timeline's generation row.
type generationBand struct {
	Generation                      int
	Class, X, Y, W, H, Title, Label string
	TextX, TextY                    string
}

// generationRow draws the bands at y; edges are the x of each publication
// after the first, drawn across the job rows.
func generationRow(gens []Generation, x func(time.Time) float64, y int) (row []generationBand, edges []string) {
	for i, g := range gens {
		x0, x1 := x(g.From), x(g.To)
		label := fmt.Sprintf("g%d · head %s · %s", g.Generation, g.HeadJob, g.How)
		row = append(row, generationBand{
			Generation: g.Generation, Class: "gen gen-" + strconv.Itoa(i%2),
			X: coord(x0), Y: strconv.Itoa(y), W: coord(math.Max(x1-x0, 0.5)), H: strconv.Itoa(barHeight),
			Title: fmt.Sprintf("generation %d: head job %s (%s), %s–%s", g.Generation, g.HeadJob, g.How, clock(g.From), clock(g.To)),
			Label: label,
			TextX: coord(x0 + 3), TextY: strconv.Itoa(y + barHeight - 3),
		})
		if i > 0 {
			edges = append(edges, coord(x0))
		}
	}
	return row, edges
}

// handoverRow is a handover's row of the summary table.
type handoverRow struct {
	Generations, OldHead, NewHead, How, Why, At string
	Sealed, Published, Gap, StepsLost           string
}

func handoverRowOf(h Handover) handoverRow {
	lost := "–"
	if h.StepsLost != nil {
		lost = strconv.Itoa(*h.StepsLost)
	}
	return handoverRow{
		Generations: fmt.Sprintf("%d → %d", h.Generation, h.Generation+1), OldHead: h.OldHead, NewHead: h.NewHead,
		How: h.How, Why: h.Why, At: clock(h.At),
		Sealed: secondsText(h.SealedS), Published: secondsText(h.PublishedS), Gap: secondsText(h.GapS), StepsLost: lost,
	}
}

// secondsText is a handover's figure ("–": unknown).
func secondsText(s *float64) string {
	if s == nil {
		return "–"
	}
	return strconv.FormatFloat(*s, 'f', 1, 64) + " s"
}
