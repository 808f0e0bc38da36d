// Package oneline turns multi-line text (a program's stderr, a log tail, a
// wrapped error) into one line, for error messages and records that must
// stay one line: a user sees every error as exactly one line.
package oneline

import "strings"

// Of collapses every run of whitespace in s, newlines included, into one
// space, and trims both ends.
func Of(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Lines joins the non-blank lines of s with "; ", each trimmed: for a
// program's stderr, whose line breaks separate messages worth telling apart.
func Lines(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
