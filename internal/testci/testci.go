// Package testci holds the one rule every test against a real system
// (SLURM, Ray, a second user) follows: outside CI it may skip when the
// system is missing; under CI=true the same reason fails it, so CI never
// passes by skipping.
package testci

import (
	"os"
	"testing"
)

// SkipOutsideCI skips t with the reason, or fails it under CI=true.
func SkipOutsideCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so this test may not skip: "+format, args...)
	}
	t.Skipf(format, args...)
}
