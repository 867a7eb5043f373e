package migrate

import (
	"context"
	"errors"
	"fmt"
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
	var sw DNSSwitch
	if m.Journal.Done(StepDNS, &sw) {
		o.event(StepRollback, "running", "restoring DNS", 0)
		for i := len(sw.Changes) - 1; i >= 0; i-- {
			if _, err := s.updater().Restore(ctx, sw.Changes[i]); err != nil {
				errs = append(errs, fmt.Errorf("restore dns %s: %w", sw.Changes[i].Name, err))
			}
		}
	}
	var took TakeoverResult
	if e, ok := m.Journal.Last(StepTakeover); ok && e.State != StepUndone {
		m.Journal.Done(StepTakeover, &took)
		if took.Proxy.ControlSocket == "" {
			errs = append(errs, errors.New("the takeover step did not finish: check the old service by hand"))
		} else {
			o.event(StepRollback, "running", "starting the old service on the held address", 0)
			base, err := s.base()
			if err == nil && len(base.Start) == 0 {
				err = errors.New("the capture recorded no start command for the old service")
			}
			if err == nil {
				var state string
				err = s.old.Call(ctx, MethodHoldCtl, HoldCtlParams{Socket: took.Proxy.ControlSocket,
					Request: HoldRequest{Cmd: HoldCmdRollback, Argv: base.Start}}, &state)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("restart old service: %w", err))
			}
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
