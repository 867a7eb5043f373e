package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

// WatchOptions shape Watch.
type WatchOptions struct {
	Interval time.Duration // between rounds (default 1s)
	// OldTTL is the longest TTL the old answer carried, when known (a
	// change record's MaxOldTTL). When zero it is learnt from the old
	// answers the authoritative servers are seen serving.
	OldTTL time.Duration
	// Progress, when set, is called after every round.
	Progress func(*WatchRound)
}

// WatchRound is the state after one round of Watch.
type WatchRound struct {
	Round  int     `json:"round"`
	Report *Report `json:"report"`
	// Pending lists the servers and resolvers not yet serving the expected data.
	Pending []string `json:"pending,omitempty"`
	// ResolverTTL is, per resolver still serving the old answer, how long
	// its cached copy has left.
	ResolverTTL map[string]time.Duration `json:"resolver_ttl_ns,omitempty"`
	// AuthSwitched is when every authoritative server was first seen
	// serving the expected data (zero until then).
	AuthSwitched time.Time `json:"auth_switched,omitzero"`
	// OldTTL is the longest TTL of the old answer, given or seen so far.
	OldTTL time.Duration `json:"old_ttl_ns"`
	// OldTTLKnown is false when the old answer was never seen on an
	// authoritative server and no OldTTL was given: SafeAfter then only
	// covers the resolvers watched.
	OldTTLKnown bool `json:"old_ttl_known"`
	// SafeAfter is the moment after which no cache anywhere can still hold
	// the old answer: AuthSwitched plus OldTTL, or later if a watched
	// resolver's cache runs longer (zero until the servers switched).
	SafeAfter time.Time `json:"safe_after,omitzero"`
	// Done is true when every server and resolver serves the expected data.
	Done bool `json:"done"`
}

// ErrNoExpectation is returned by Watch without Query.Expect.
var ErrNoExpectation = errors.New("watch needs the expected data")

// Watch checks q every interval until every authoritative server and
// every resolver serves q.Expect, and returns the last round. It stops
// with ctx's error (and the last round) when ctx ends first.
func Watch(ctx context.Context, q Query, opt WatchOptions) (*WatchRound, error) {
	if len(q.Expect) == 0 {
		return nil, hint.With(ErrNoExpectation, "say what the servers should serve with --expect NAME=ADDR")
	}
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	st := &WatchRound{OldTTL: opt.OldTTL, OldTTLKnown: opt.OldTTL > 0}
	tick := time.NewTicker(opt.Interval)
	defer tick.Stop()
	for round := 1; ; round++ {
		rep, err := Check(ctx, q)
		switch {
		case err != nil && st.Report == nil:
			return nil, err
		case err != nil && ctx.Err() != nil:
			return st, fmt.Errorf("watch: %w", ctx.Err())
		case err != nil:
			// The check ran before: a passing failure (such as finding the
			// NS through a resolver) is retried next round.
			if q.Logger != nil {
				q.Logger.Warn("watch round failed", "round", round, "err", err)
			}
		default:
			st = nextRound(st, round, rep)
			if opt.Progress != nil {
				opt.Progress(st)
			}
			if st.Done {
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("watch: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// nextRound folds a new report into the watch state.
func nextRound(prev *WatchRound, round int, rep *Report) *WatchRound {
	st := &WatchRound{Round: round, Report: rep, AuthSwitched: prev.AuthSwitched, OldTTL: prev.OldTTL,
		OldTTLKnown: prev.OldTTLKnown, ResolverTTL: map[string]time.Duration{}}
	authDone := len(rep.Servers) > 0
	for _, s := range rep.Servers {
		if s.Expected == nil || !*s.Expected {
			authDone = false
			st.Pending = append(st.Pending, s.Server)
			if ttl, stale := staleTTL(s.Answers, rep.Expect); stale {
				st.OldTTL = max(st.OldTTL, time.Duration(ttl)*time.Second)
				st.OldTTLKnown = true
			}
		}
	}
	if authDone && st.AuthSwitched.IsZero() {
		st.AuthSwitched = rep.Time
	}
	if !st.AuthSwitched.IsZero() {
		st.SafeAfter = st.AuthSwitched.Add(st.OldTTL)
		if prev.SafeAfter.After(st.SafeAfter) {
			st.SafeAfter = prev.SafeAfter
		}
	}
	resolversDone := true
	for _, s := range rep.Resolvers {
		if s.Expected != nil && *s.Expected {
			continue
		}
		resolversDone = false
		st.Pending = append(st.Pending, s.Server)
		if ttl, stale := staleTTL(s.Answers, rep.Expect); stale {
			left := time.Duration(ttl) * time.Second
			st.ResolverTTL[s.Server] = left
			if exp := rep.Time.Add(left); !st.SafeAfter.IsZero() && exp.After(st.SafeAfter) {
				st.SafeAfter = exp
			}
		}
	}
	st.Done = authDone && resolversDone
	return st
}
