package testenv

import (
	"fmt"
	"testing"
)

type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }
func (f *fakeTB) Skip(a ...any)                  { f.skipped = fmt.Sprint(a...) }

func TestSkipOrFail(t *testing.T) {
	t.Setenv("MIGRATE_E2E_REQUIRE", "")
	var f fakeTB
	Skip(&f, "no zstd")
	if f.skipped != "no zstd" || f.failed != "" {
		t.Fatalf("not required: %+v", f)
	}
	t.Setenv("MIGRATE_E2E_REQUIRE", "1")
	f = fakeTB{}
	Skip(&f, "no zstd")
	if f.failed != "precondition missing (MIGRATE_E2E_REQUIRE=1): no zstd" {
		t.Fatalf("required: %+v", f)
	}
}
