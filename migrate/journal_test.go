package migrate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrate-tool/migrate/internal/hint"
)

func TestCreateOpenLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "web1")
	m, err := Create(dir, &Plan{Version: PlanVersion, Name: "web1", From: "local", To: "local", Service: "nginx"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "in use") || hint.Of(err) == "" {
		t.Fatalf("second open while locked: %v", err)
	}
	if _, err := Create(dir, &Plan{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create over existing: %v", err)
	}
	m.Close()
	m2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Plan.Service != "nginx" {
		t.Fatalf("plan not kept: %+v", m2.Plan)
	}
	if _, err := Open(t.TempDir()); !errors.Is(err, ErrNotMigration) || hint.Of(err) == "" {
		t.Fatalf("open empty dir: %v", err)
	}
}

func TestRunIsIdempotentAndResumes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	m, err := Create(dir, &Plan{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := 0
	step := func(ctx context.Context) (int, error) { calls++; return 42, nil }
	var got int
	if ran, err := Run(ctx, m.Journal, "capture", &got, step); err != nil || !ran || got != 42 {
		t.Fatalf("first run: ran=%v got=%d err=%v", ran, got, err)
	}
	// A failing step is recorded and runs again next time.
	boom := errors.New("boom")
	if _, err := Run(ctx, m.Journal, "transfer", nil, func(ctx context.Context) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("failing step: %v", err)
	}
	m.Close()

	// Simulate a crash in the middle of writing a journal line.
	f, _ := os.OpenFile(filepath.Join(dir, JournalFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-11-22T00:00:00Z","step":"cutov`)
	f.Close()

	m, err = Open(dir)
	if err != nil {
		t.Fatalf("reopen after torn write: %v", err)
	}
	defer m.Close()
	got = 0
	if ran, err := Run(ctx, m.Journal, "capture", &got, step); err != nil || ran || got != 42 || calls != 1 {
		t.Fatalf("done step ran again: ran=%v got=%d calls=%d err=%v", ran, got, calls, err)
	}
	if ran, err := Run(ctx, m.Journal, "transfer", nil, func(ctx context.Context) (int, error) { return 7, nil }); err != nil || !ran {
		t.Fatalf("failed step not retried: ran=%v err=%v", ran, err)
	}
	st := m.Journal.Status()
	if len(st) != 2 || st[0].Step != "capture" || st[1].Step != "transfer" || st[1].State != StepDone {
		t.Fatalf("status: %+v", st)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Run(cctx, m.Journal, "drain", nil, step); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
