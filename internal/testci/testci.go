// Package testci holds the rules every test of the module follows. A test
// against a real system (SLURM, Ray, a second user) is built only with
// -tags e2e; built in, outside CI it may skip when the system is missing,
// and under CI=true the same reason fails it, so CI never passes by
// skipping. A test that waits for something polls with Eventually (or
// Poll), never with a loop of its own.
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
