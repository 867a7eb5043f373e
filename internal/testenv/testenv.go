// Package testenv lets a test skip when the machine lacks something it
// needs (root, a tool, a kernel feature), except where every test must
// run: with MIGRATE_E2E_REQUIRE=1 (as .ci/run sets) a missing
// precondition fails the test instead, so CI cannot pass by skipping.
package testenv

import (
	"fmt"
	"os"
)

// TB is the part of testing.TB Skip needs.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skip(args ...any)
}

// Required reports whether missing preconditions must fail tests.
func Required() bool { return os.Getenv("MIGRATE_E2E_REQUIRE") == "1" }

// Skip skips the test with args as the reason, or fails it when
// preconditions are required.
func Skip(t TB, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("precondition missing (MIGRATE_E2E_REQUIRE=1): %s", fmt.Sprint(args...))
	}
	t.Skip(args...)
}
