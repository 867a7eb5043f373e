package migrate

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/migrate-tool/migrate/dnscheck"
)

// afterTakeover are the steps undone by a rollback: a later cutover takes
// them again.
var afterTakeover = []string{StepTakeover, StepFinalSync, StepRestart, StepRelease, StepDNS}

// Rollback puts the old host back in service, on demand (also after a
// successful cutover): DNS changes are restored, and the old service is
// started again on the address the holding proxy kept open, so no
// connection is refused.
func Rollback(ctx context.Context, m *Migration, o Options) error {
	s, err := openSession(ctx, m, &o)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.rollback(ctx)
}

func (s *session) rollback(ctx context.Context) error {
	m, o := s.m, s.o
	var errs []error
	if changes := s.dnsChanges(); len(changes) > 0 {
		o.event(StepRollback, "running", "restoring DNS", 0)
		for i := len(changes) - 1; i >= 0; i-- {
			if _, err := s.updater().Restore(ctx, changes[i]); err != nil {
				errs = append(errs, fmt.Errorf("restore dns %s: %w", changes[i].Name, err))
			}
		}
	}
	if e, ok := m.Journal.Last(StepTakeover); ok && e.State != StepUndone {
		var took TakeoverResult
		done := m.Journal.Done(StepTakeover, &took)
		sock := took.Proxy.ControlSocket
		if sock == "" {
			// The step failed after (or while) its work: the holder, if
			// it started, answers at its fixed place.
			sock = filepath.Join(StateDir, m.Plan.Name, "control.sock")
		}
		o.event(StepRollback, "running", "starting the old service on the held address", 0)
		base, err := s.base()
		if err == nil && len(base.Start) == 0 {
			err = errors.New("the capture recorded no start command for the old service")
		}
		if err == nil {
			var state string
			err = s.old.Call(ctx, MethodHoldCtl, HoldCtlParams{Socket: sock,
				Request: HoldRequest{Cmd: HoldCmdRollback, Argv: base.Start}}, &state)
			if err != nil && !done && strings.Contains(err.Error(), "no such file") {
				// No holder was started: the old service was never stopped.
				err = nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restart old service: %w", err))
		}
	}
	err := errors.Join(errs...)
	if err == nil {
		for _, st := range afterTakeover {
			if _, ok := m.Journal.Last(st); ok {
				if jerr := m.Journal.Append(st, StepUndone, nil, nil); jerr != nil {
					return jerr
				}
			}
		}
	}
	if jerr := m.Journal.Append(StepRollback, map[bool]string{true: StepDone, false: StepFailed}[err == nil], nil, err); jerr != nil {
		return errors.Join(err, jerr)
	}
	if err != nil {
		o.event(StepRollback, "failed", err.Error(), 0)
	} else {
		o.event(StepRollback, "done", "old host serves again", 0)
	}
	return err
}

// dnsChanges returns the DNS changes cutover made and rollback must undo:
// those of the dns-switch step, or, when the step did not finish, the
// change records it wrote before each update.
func (s *session) dnsChanges() []*dnscheck.Change {
	m := s.m
	e, ok := m.Journal.Last(StepDNS)
	if !ok || e.State == StepUndone {
		return nil
	}
	var sw DNSSwitch
	if m.Journal.Done(StepDNS, &sw) {
		return sw.Changes
	}
	var out []*dnscheck.Change
	files, _ := filepath.Glob(m.Path("dns", "*.json"))
	for _, f := range files {
		ch, err := dnscheck.ReadChange(f)
		if err != nil || ch.Op != "set" {
			continue
		}
		switch ch.Status {
		case "applied", "confirmed", "unconfirmed":
			out = append(out, ch)
		}
	}
	return out
}
