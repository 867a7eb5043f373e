package migrate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Step states in the journal.
const (
	StepStarted = "started"
	StepDone    = "done"
	StepFailed  = "failed"
	StepUndone  = "undone"
)

// Entry is one line of the journal.
type Entry struct {
	Time  time.Time       `json:"time"`
	Step  string          `json:"step"`
	State string          `json:"state"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// Journal is the append-only record of a migration's steps. Each entry is
// one JSON line, synced to disk before the step it records is taken to be
// done. A torn last line (a crash mid-write) is ignored on replay.
type Journal struct {
	mu      sync.Mutex
	f       *os.File
	entries []Entry
	now     func() time.Time
}

func openJournal(path string) (*Journal, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	j := &Journal{now: time.Now}
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			if i == len(lines)-1 {
				break // torn final line: the step it recorded did not finish
			}
			return nil, fmt.Errorf("journal %s line %d: %w", path, i+1, err)
		}
		j.entries = append(j.entries, e)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		// Cut the torn line so that appends start on a line of their own.
		if err := os.Truncate(path, int64(bytes.LastIndexByte(b, '\n')+1)); err != nil {
			return nil, fmt.Errorf("repair journal: %w", err)
		}
	}
	if j.f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return j, nil
}

// Close closes the journal file.
func (j *Journal) Close() error { return j.f.Close() }

// Append records an entry and syncs it to disk.
func (j *Journal) Append(step, state string, data any, stepErr error) error {
	e := Entry{Time: j.now().UTC(), Step: step, State: state}
	if stepErr != nil {
		e.Error = stepErr.Error()
	}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("journal %s: %w", step, err)
		}
		e.Data = b
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	w := bufio.NewWriter(j.f)
	w.Write(line)
	w.WriteByte('\n')
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	j.entries = append(j.entries, e)
	return nil
}

// Entries returns a copy of every entry so far.
func (j *Journal) Entries() []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Entry(nil), j.entries...)
}

// Last returns the latest entry of step, if any.
func (j *Journal) Last(step string) (Entry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.entries) - 1; i >= 0; i-- {
		if j.entries[i].Step == step {
			return j.entries[i], true
		}
	}
	return Entry{}, false
}

// Done reports whether step's latest state is done, and decodes its data
// into v (if v is not nil).
func (j *Journal) Done(step string, v any) bool {
	e, ok := j.Last(step)
	if !ok || e.State != StepDone {
		return false
	}
	if v != nil && len(e.Data) > 0 {
		if err := json.Unmarshal(e.Data, v); err != nil {
			return false
		}
	}
	return true
}

// Run runs step fn unless the journal already has it done, recording its
// start and its end. The result of fn is stored with the done entry and
// decoded into out (a pointer, or nil) whether the step ran now or earlier.
func Run[T any](ctx context.Context, j *Journal, step string, out *T, fn func(ctx context.Context) (T, error)) (ran bool, err error) {
	var prev T
	if j.Done(step, &prev) {
		if out != nil {
			*out = prev
		}
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := j.Append(step, StepStarted, nil, nil); err != nil {
		return false, err
	}
	res, err := fn(ctx)
	if err != nil {
		if jerr := j.Append(step, StepFailed, nil, err); jerr != nil {
			return true, errors.Join(err, jerr)
		}
		return true, err
	}
	if err := j.Append(step, StepDone, res, nil); err != nil {
		return true, err
	}
	if out != nil {
		*out = res
	}
	return true, nil
}

// StepStatus is the state of one step for `migrate status`.
type StepStatus struct {
	Step  string    `json:"step"`
	State string    `json:"state"`
	Time  time.Time `json:"time"`
	Error string    `json:"error,omitempty"`
}

// Status returns the latest state of every step, in the order the steps
// first appeared in the journal.
func (j *Journal) Status() []StepStatus {
	var order []string
	last := map[string]Entry{}
	for _, e := range j.Entries() {
		if _, seen := last[e.Step]; !seen {
			order = append(order, e.Step)
		}
		last[e.Step] = e
	}
	out := make([]StepStatus, 0, len(order))
	for _, s := range order {
		e := last[s]
		out = append(out, StepStatus{Step: s, State: e.State, Time: e.Time, Error: e.Error})
	}
	return out
}
