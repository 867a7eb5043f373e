package testbed

// TB is what a bed needs from its owner: a *testing.T or *testing.B in
// tests, or the runner of `migrate demo`. Fatalf and Skipf must not
// return (testing's call runtime.Goexit; the demo's panic and recover).
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Skip(args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}
