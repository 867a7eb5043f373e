package capture

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A spool whose name carries a PID that does not exist here (a capture in
// another PID namespace sharing /tmp) must survive the sweep while its
// owner holds the lock, and be swept once the owner is gone.
func TestSweepSpoolsHonoursLock(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	sp, err := newSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	// Rename to a PID no process here has; the flock stays on the inode.
	foreign := filepath.Join(os.TempDir(), "migrate-capture-2147483000-x")
	if err := os.Rename(sp.dir, foreign); err != nil {
		t.Fatal(err)
	}
	sp.dir = foreign
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(foreign, old, old); err != nil {
		t.Fatal(err)
	}

	sweepSpools()
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("a locked spool was swept: %v", err)
	}

	// A fresh unlocked spool (its creator about to lock it) is left alone.
	fresh := filepath.Join(os.TempDir(), "migrate-capture-2147483001-y")
	if err := os.Mkdir(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	sweepSpools()
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("a spool younger than the grace time was swept: %v", err)
	}

	// The owner dies: its lock goes with it.
	sp.lock.Close()
	sp.lock = nil
	sweepSpools()
	if _, err := os.Stat(foreign); !os.IsNotExist(err) {
		t.Fatalf("an abandoned spool was kept (stat: %v)", err)
	}

	// A spool closed normally removes itself.
	sp2, err := newSpool()
	if err != nil {
		t.Fatal(err)
	}
	sp2.close()
	if _, err := os.Stat(sp2.dir); !os.IsNotExist(err) {
		t.Errorf("closed spool not removed (stat: %v)", err)
	}
}
