package metrics

import (
	"bufio"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Content types of the two exposition formats.
const (
	ContentTypeOpenMetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8"
	ContentTypeText        = "text/plain; version=0.0.4; charset=utf-8"
)

type kind string

const (
	gauge     kind = "gauge"
	counter   kind = "counter"
	histogram kind = "histogram"
)

// family is one metric family: its samples carry the suffix the format
// needs (_total, _bucket, _count, _sum) themselves.
type family struct {
	name, help string
	// unit, when set, ends name (OpenMetrics requires it) and is announced
	// with # UNIT in OpenMetrics.
	unit    string
	kind    kind
	samples []sample
}

type sample struct {
	suffix string
	labels []label
	value  float64
}

type label struct{ name, value string }

// encode writes families in OpenMetrics (ending "# EOF") or in Prometheus
// text format 0.0.4, which differ in how counters are named and in the end
// marker.
func encode(w io.Writer, fams []family, openMetrics bool) error {
	b := bufio.NewWriter(w)
	for _, f := range fams {
		if len(f.samples) == 0 {
			continue
		}
		name := f.name
		if f.kind == counter && !openMetrics {
			name += "_total" // the text format names a counter by its sample
		}
		b.WriteString("# HELP " + name + " " + escapeHelp(f.help) + "\n")
		b.WriteString("# TYPE " + name + " " + string(f.kind) + "\n")
		if openMetrics && f.unit != "" {
			b.WriteString("# UNIT " + name + " " + f.unit + "\n")
		}
		for _, s := range f.samples {
			b.WriteString(f.name + s.suffix)
			if len(s.labels) > 0 {
				b.WriteByte('{')
				for i, l := range s.labels {
					if i > 0 {
						b.WriteByte(',')
					}
					b.WriteString(l.name + `="` + escapeLabel(l.value) + `"`)
				}
				b.WriteByte('}')
			}
			b.WriteString(" " + formatValue(s.value) + "\n")
		}
	}
	if openMetrics {
		b.WriteString("# EOF\n")
	}
	return b.Flush()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// formatBound writes a bucket bound as OpenMetrics's canonical float ("1.0").
func formatBound(v float64) string {
	s := formatValue(v)
	if !strings.ContainsAny(s, ".eEIN") {
		s += ".0"
	}
	return s
}

// histogramSamples turns observations into a cumulative histogram's
// samples (buckets, +Inf, count, sum) under labels.
func histogramSamples(labels []label, bounds []float64, observed []float64) []sample {
	sort.Float64s(observed)
	var out []sample
	var sum float64
	for _, v := range observed {
		sum += v
	}
	i := 0
	for _, le := range bounds {
		for i < len(observed) && observed[i] <= le {
			i++
		}
		out = append(out, sample{"_bucket", with(labels, label{"le", formatBound(le)}), float64(i)})
	}
	n := float64(len(observed))
	out = append(out,
		sample{"_bucket", with(labels, label{"le", "+Inf"}), n},
		sample{"_count", labels, n},
		sample{"_sum", labels, sum})
	return out
}

// with returns labels plus more, never sharing labels' backing array.
func with(labels []label, more ...label) []label {
	return append(append(make([]label, 0, len(labels)+len(more)), labels...), more...)
}
