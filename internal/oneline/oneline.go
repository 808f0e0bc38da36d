// Package oneline turns multi-line text (a program's stderr, a log tail)
// into one line, for error messages and records that must stay one line.
package oneline

import "strings"

// Of joins the non-blank lines of s with "; ", each with its runs of
// whitespace collapsed to one space.
func Of(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines = append(lines, strings.Join(f, " "))
		}
	}
	return strings.Join(lines, "; ")
}
