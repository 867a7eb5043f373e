package tail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// collector runs a Tailer and records every line it delivers.
type collector struct {
	mu    sync.Mutex
	lines []string
	tl    *Tailer
	done  chan error
	stop  context.CancelFunc
}

func follow(t *testing.T, path string, opts Options) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := &collector{tl: New(path, opts), done: make(chan error, 1), stop: cancel}
	go func() {
		c.done <- c.tl.Run(ctx, func(lines [][]byte) error {
			c.mu.Lock()
			for _, l := range lines {
				c.lines = append(c.lines, string(l))
			}
			c.mu.Unlock()
			return nil
		})
	}()
	select {
	case <-c.tl.Ready():
	case err := <-c.done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-c.done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

// testWriter sends the tailer's debug log to the test log, shown on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

func (c *collector) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitForLines waits for n lines; on timeout it shows what arrived.
func waitForLines(t *testing.T, c *collector, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.count() < n {
		if time.Now().After(deadline) {
			lines := c.snapshot()
			for i, l := range lines {
				if l != fmt.Sprintf("line %d", i) {
					t.Errorf("first bad line %d: %q", i, l)
					break
				}
			}
			t.Fatalf("timed out: %d of %d lines, stats %+v", len(lines), n, c.tl.Stats())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// checkSequence asserts lines are exactly "line 0" … "line n-1".
func checkSequence(t *testing.T, lines []string, n int) {
	t.Helper()
	if len(lines) != n {
		t.Errorf("got %d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		if want := fmt.Sprintf("line %d", i); l != want {
			t.Fatalf("line %d is %q, want %q (lost, duplicated or reordered)", i, l, want)
		}
	}
}

func TestFromStartAndAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "line 0\nline 1\n")
	c := follow(t, path, Options{FromStart: true})
	waitFor(t, "existing lines", func() bool { return c.count() == 2 })
	appendFile(t, path, "line 2\nline 3\n")
	waitFor(t, "appended lines", func() bool { return c.count() == 4 })
	checkSequence(t, c.snapshot(), 4)
}

func TestStartAtEndMidLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "old 1\nold 2\nhalf of a li")
	c := follow(t, path, Options{})
	appendFile(t, path, "ne\nline 0\n")
	waitFor(t, "new line", func() bool { return c.count() >= 1 })
	waitFor(t, "all bytes", func() bool { return c.tl.Stats().Bytes == int64(len("ne\nline 0\n")) })
	checkSequence(t, c.snapshot(), 1)
}

func TestFileAppearsLater(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "later.log")
	c := follow(t, path, Options{})
	appendFile(t, path, "line 0\nline 1\n")
	waitFor(t, "lines of the new file", func() bool { return c.count() == 2 })
	checkSequence(t, c.snapshot(), 2)
}

func TestPartialLineHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "")
	c := follow(t, path, Options{FromStart: true})
	appendFile(t, path, "line")
	waitFor(t, "partial bytes read", func() bool { return c.tl.Stats().Bytes == 4 })
	if n := c.count(); n != 0 {
		t.Fatalf("partial line delivered (%d lines)", n)
	}
	appendFile(t, path, " 0\n")
	waitFor(t, "completed line", func() bool { return c.count() == 1 })
	checkSequence(t, c.snapshot(), 1)
}

func TestLongLineSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	long := strings.Repeat("x", 10000)
	appendFile(t, path, "line 0\n"+long+"\nline 1\n")
	c := follow(t, path, Options{FromStart: true, BufferSize: 1024, MaxLineSize: 4096})
	waitFor(t, "lines", func() bool { return c.count() == 2 })
	checkSequence(t, c.snapshot(), 2)
	if got := c.tl.Stats().LongLines; got != 1 {
		t.Fatalf("LongLines = %d", got)
	}
}

func TestCallbackErrorStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	appendFile(t, path, "line 0\n")
	boom := errors.New("boom")
	err := New(path, Options{FromStart: true}).Run(context.Background(), func([][]byte) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v", err)
	}
}

func TestCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- New(path, Options{PollInterval: time.Hour}).Run(ctx, func([][]byte) error { return nil })
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// writer appends numbered lines, one write per line, like a web server.
type writer struct {
	t    *testing.T
	path string
	f    *os.File
	next int
}

func (w *writer) reopen() {
	if w.f != nil {
		w.f.Close()
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		w.t.Error(err)
		return
	}
	w.f = f
}

func (w *writer) write(n int) {
	for i := 0; i < n; i++ {
		if _, err := fmt.Fprintf(w.f, "line %d\n", w.next); err != nil {
			w.t.Error(err)
			return
		}
		w.next++
	}
}

// awaitCount waits (from the writer's goroutine) until the tailer has
// delivered n lines. Rotations in the tests are spaced like this so that
// two of them never fall within the tailer's reaction time (see the
// limits in docs/logs.md); the tailer may still be behind the writer
// when a rotation happens.
func awaitCount(t *testing.T, c *collector, n int) bool {
	deadline := time.Now().Add(20 * time.Second)
	for c.count() < n {
		if time.Now().After(deadline) {
			t.Errorf("tailer stuck at %d of %d lines, stats %+v", c.count(), n, c.tl.Stats())
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

func TestRotateByRename(t *testing.T) {
	const rounds, per = 4, 5000
	path := filepath.Join(t.TempDir(), "access.log")
	w := &writer{t: t, path: path}
	w.reopen()
	c := follow(t, path, Options{FromStart: true, PollInterval: time.Hour}) // inotify only
	firstInFile := 0
	for r := 0; r < rounds; r++ {
		w.write(per)
		if !awaitCount(t, c, firstInFile+1) {
			return
		}
		// logrotate: rename, create the new file, then the server
		// reopens; in between it still writes to the renamed file.
		if err := os.Rename(path, fmt.Sprintf("%s.%d", path, r+1)); err != nil {
			t.Fatal(err)
		}
		w.write(per / 2)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		w.write(per / 2)
		w.reopen()
		firstInFile = w.next
	}
	w.write(per)
	w.f.Close()
	total := rounds*2*per + per
	waitForLines(t, c, total)
	checkSequence(t, c.snapshot(), total)
	if st := c.tl.Stats(); st.Rotations != rounds {
		t.Errorf("Rotations = %d, want %d", st.Rotations, rounds)
	}
}

func TestRotateByCopyTruncate(t *testing.T) {
	const rounds, per = 4, 5000
	path := filepath.Join(t.TempDir(), "access.log")
	w := &writer{t: t, path: path}
	w.reopen()
	c := follow(t, path, Options{FromStart: true, PollInterval: time.Hour})
	for r := 0; r < rounds; r++ {
		first := w.next
		w.write(per)
		// The tailer has started on this generation of the file, and may
		// be anywhere in it when the copy is made.
		if !awaitCount(t, c, first+1) {
			return
		}
		copyTruncate(t, path)
	}
	w.write(per)
	w.f.Close()
	total := rounds*per + per
	waitForLines(t, c, total)
	checkSequence(t, c.snapshot(), total)
	if st := c.tl.Stats(); st.Truncations != rounds || st.Lost != 0 {
		t.Errorf("stats %+v, want %d truncations and nothing lost", st, rounds)
	}
}

// copyTruncate does what logrotate's copytruncate does: copy to path.1,
// then truncate path in place.
func copyTruncate(t *testing.T, path string) {
	t.Helper()
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
}

// TestRotateWhileTailing interleaves both kinds of rotation with a writer
// goroutine that keeps writing while the tailer runs. Like logrotate, it
// shifts path.1 to path.2 first, and lets some time pass between two
// rotations (it waits until the tailer has seen the lines written before
// the previous rotation).
func TestRotateWhileTailing(t *testing.T) {
	const total, chunk = 60000, 3000
	path := filepath.Join(t.TempDir(), "access.log")
	w := &writer{t: t, path: path}
	w.reopen()
	c := follow(t, path, Options{FromStart: true})
	done := make(chan struct{})
	go func() {
		defer close(done)
		seenBefore := 0
		for w.next < total {
			w.write(min(chunk, total-w.next))
			if !awaitCount(t, c, seenBefore) {
				return
			}
			seenBefore = w.next
			os.Rename(path+".1", path+".2")
			switch (w.next / chunk) % 4 {
			case 1:
				os.Rename(path, path+".1")
				w.write(min(100, total-w.next))
				w.reopen()
			case 3:
				copyTruncate(t, path)
			}
		}
		w.f.Close()
	}()
	<-done
	if t.Failed() {
		return
	}
	waitForLines(t, c, total)
	checkSequence(t, c.snapshot(), total)
}

// TestRotateGraceLateWriter: a second writer (another worker process)
// keeps writing to the renamed file after the first one moved to the new
// file; its lines still arrive, after the switch.
func TestRotateGraceLateWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	w1 := &writer{t: t, path: path}
	w1.reopen()
	w2 := &writer{t: t, path: path}
	w2.reopen()
	c := follow(t, path, Options{FromStart: true, RotateGrace: time.Minute})
	w1.write(100)
	if !awaitCount(t, c, 100) {
		return
	}
	os.Rename(path, path+".1")
	w1.reopen() // creates the new file
	w1.write(100)
	if !awaitCount(t, c, 200) { // switched: the new file's lines arrived
		return
	}
	w2.next = 200
	w2.write(100) // late worker, still on the renamed file
	w2.f.WriteString("line 300")
	w2.f.Close()
	w1.f.Close()
	waitForLines(t, c, 300)
	got := c.snapshot()
	seen := map[string]bool{}
	for _, l := range got {
		if seen[l] {
			t.Fatalf("line %q twice", l)
		}
		seen[l] = true
	}
	for i := 0; i < 300; i++ {
		if !seen[fmt.Sprintf("line %d", i)] {
			t.Fatalf("line %d missing", i)
		}
	}
	if st := c.tl.Stats(); st.Rotations != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRotateGraceEnds: after the grace period the renamed file is closed,
// delivering its last line even without a newline (after the new file's
// lines: a late writer could have completed it until then).
func TestRotateGraceEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	w := &writer{t: t, path: path}
	w.reopen()
	c := follow(t, path, Options{FromStart: true, RotateGrace: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	old := w.f
	w.write(1)
	os.Rename(path, path+".1")
	w.f = nil
	w.reopen()
	old.WriteString("line 1")
	old.Close()
	w.next = 2
	w.write(1)
	waitForLines(t, c, 3)
	if got := strings.Join(c.snapshot(), ","); got != "line 0,line 2,line 1" {
		t.Fatalf("lines %s", got)
	}
}

// TestDirRecreated: the log's directory is removed and made again (a
// tmpfs remounted, a test bed rebuilt); following goes on in the new file.
func TestDirRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	os.Mkdir(dir, 0o755)
	path := filepath.Join(dir, "access.log")
	appendFile(t, path, "line 0\n")
	c := follow(t, path, Options{FromStart: true, PollInterval: 100 * time.Millisecond})
	waitForLines(t, c, 1)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir, 0o755)
	appendFile(t, path, "line 1\n")
	waitForLines(t, c, 2)
	appendFile(t, path, "line 2\n")
	waitForLines(t, c, 3)
	checkSequence(t, c.snapshot(), 3)
}
