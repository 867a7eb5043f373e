package migrate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/migrate-tool/migrate/internal/accesslog"
	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/tail"
)

// MethodFollow is the agent method that follows an access log on the host
// it runs on (surviving rotation by rename and by copytruncate) and
// streams what arrives as FollowBatch NDJSON lines: counts per client, not
// the lines themselves. It runs until the caller ends its input stream,
// then returns the FollowResult with every line counted.
const MethodFollow = "drain.follow"

// FollowParams are the parameters of MethodFollow.
type FollowParams struct {
	Path   string `json:"path"`
	Format string `json:"format,omitempty"` // accesslog format, "" = detect
	// FromStart counts the lines already in the file too.
	FromStart bool `json:"from_start,omitempty"`
	// Flush is how often a batch is sent while lines arrive (default
	// 200ms); an empty batch is sent every Heartbeat (default 2s).
	Flush     time.Duration `json:"flush_ns,omitempty"`
	Heartbeat time.Duration `json:"heartbeat_ns,omitempty"`
	// MaxClients bounds the distinct clients of one batch (default 10000);
	// more are counted under traffic.Other.
	MaxClients int `json:"max_clients,omitempty"`
}

// FollowBatch is what arrived since the previous batch. The first batch
// is sent as soon as the file is being followed: lines written after the
// caller receives it are all counted.
type FollowBatch struct {
	Lines   int64            `json:"lines"`
	Skipped int64            `json:"skipped,omitempty"` // lines that did not parse
	Clients map[string]int64 `json:"clients,omitempty"`
	Format  string           `json:"format,omitempty"`
	Tail    tail.Stats       `json:"tail"` // totals so far
}

// FollowResult is the result of MethodFollow.
type FollowResult struct {
	Lines   int64      `json:"lines"`
	Skipped int64      `json:"skipped"`
	Format  string     `json:"format,omitempty"`
	Tail    tail.Stats `json:"tail"`
}

func init() {
	agent.Register(MethodFollow, func(ctx context.Context, c *agent.Call) (any, error) {
		var p FollowParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			// The caller ends its stream to stop the follow.
			io.Copy(io.Discard, c.In)
			cancel()
		}()
		return Follow(ctx, p, c.Out)
	})
}

// Follow tails p.Path until ctx ends and writes batches to out. It returns
// the totals (not an error) when ctx ends.
func Follow(ctx context.Context, p FollowParams, out io.Writer) (*FollowResult, error) {
	if p.Flush <= 0 {
		p.Flush = 200 * time.Millisecond
	}
	if p.Heartbeat <= 0 {
		p.Heartbeat = 2 * time.Second
	}
	if p.MaxClients <= 0 {
		p.MaxClients = 10000
	}
	parser, err := accesslog.NewParser(p.Format, accesslog.Options{SkipPath: true})
	if err != nil {
		return nil, err
	}
	t := tail.New(p.Path, tail.Options{FromStart: p.FromStart, PollInterval: 500 * time.Millisecond})
	f := &follower{p: p, parser: parser, tail: t, cur: FollowBatch{Clients: map[string]int64{}}}
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- t.Run(tctx, f.lines) }()
	enc := json.NewEncoder(out)
	tick := time.NewTicker(p.Flush)
	defer tick.Stop()
	last := time.Now()
	ready := t.Ready()
	var runErr error
loop:
	for {
		select {
		case runErr = <-done:
			break loop
		case <-ready:
			// The first batch says the log is being followed.
			ready = nil
			b, _ := f.take(true)
			if err := enc.Encode(b); err != nil {
				stop()
				<-done
				return nil, fmt.Errorf("follow %s: send: %w", p.Path, err)
			}
			last = time.Now()
		case <-tick.C:
			if b, ok := f.take(time.Since(last) >= p.Heartbeat); ok {
				if err := enc.Encode(b); err != nil {
					stop()
					<-done
					return nil, fmt.Errorf("follow %s: send: %w", p.Path, err)
				}
				last = time.Now()
			}
		}
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return nil, runErr
	}
	// Send what the tailer delivered before it stopped.
	if b, ok := f.take(true); ok {
		_ = enc.Encode(b)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &FollowResult{Lines: f.total, Skipped: f.skipped, Format: string(parser.Format()), Tail: t.Stats()}, nil
}

type follower struct {
	p      FollowParams
	parser *accesslog.Parser
	tail   *tail.Tailer

	mu             sync.Mutex
	cur            FollowBatch
	total, skipped int64
	rec            accesslog.Record
}

// lines is the tailer's callback: parse and count.
func (f *follower) lines(ls [][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range ls {
		f.total++
		f.cur.Lines++
		if err := f.parser.Parse(l, &f.rec); err != nil {
			f.skipped++
			f.cur.Skipped++
			continue
		}
		c := f.rec.Client
		if _, ok := f.cur.Clients[c]; !ok && len(f.cur.Clients) >= f.p.MaxClients {
			c = "(other)"
		}
		f.cur.Clients[c]++
	}
	return nil
}

// take returns the batch so far and starts a new one; ok is false for an
// empty batch unless force.
func (f *follower) take(force bool) (FollowBatch, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur.Lines == 0 && !force {
		return FollowBatch{}, false
	}
	b := f.cur
	b.Format = string(f.parser.Format())
	b.Tail = f.tail.Stats()
	f.cur = FollowBatch{Clients: map[string]int64{}}
	return b, true
}

// MethodRecent is the agent method that reads the requests an access log
// holds since a moment (by the time each line carries), for a one-off
// drain check.
const MethodRecent = "drain.recent"

// RecentParams are the parameters of MethodRecent.
type RecentParams struct {
	Path   string    `json:"path"`
	Format string    `json:"format,omitempty"`
	Since  time.Time `json:"since"`
}

// RecentResult counts the requests logged since RecentParams.Since.
type RecentResult struct {
	// Seconds maps a Unix second to the requests logged in it.
	Seconds map[int64]int64  `json:"seconds,omitempty"`
	Clients map[string]int64 `json:"clients,omitempty"`
	Lines   int64            `json:"lines"`
	Undated int64            `json:"undated,omitempty"` // lines without a time of their own
	Format  string           `json:"format,omitempty"`
}

func init() {
	agent.Register(MethodRecent, func(ctx context.Context, c *agent.Call) (any, error) {
		var p RecentParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return Recent(ctx, p)
	})
}

// Recent reads p.Path (and p.Path.1, which holds the lines of a rotation
// just made) and counts the requests logged since p.Since.
func Recent(ctx context.Context, p RecentParams) (*RecentResult, error) {
	parser, err := accesslog.NewParser(p.Format, accesslog.Options{SkipPath: true})
	if err != nil {
		return nil, err
	}
	r := &RecentResult{Seconds: map[int64]int64{}, Clients: map[string]int64{}}
	found := false
	for _, path := range []string{p.Path + ".1", p.Path} {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		found = true
		err = recentFile(ctx, f, parser, p.Since, r)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if !found {
		return nil, fmt.Errorf("access log %s: %w", p.Path, os.ErrNotExist)
	}
	r.Format = string(parser.Format())
	return r, nil
}

func recentFile(ctx context.Context, f *os.File, parser *accesslog.Parser, since time.Time, r *RecentResult) error {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 256<<10), accesslog.MaxLine)
	var rec accesslog.Record
	for sc.Scan() {
		if r.Lines%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		r.Lines++
		if parser.Parse(sc.Bytes(), &rec) != nil {
			continue
		}
		if rec.Time.IsZero() {
			r.Undated++
			continue
		}
		if rec.Time.Before(since) {
			continue
		}
		r.Seconds[rec.Time.Unix()]++
		if len(r.Clients) < 10000 {
			r.Clients[rec.Client]++
		}
	}
	return sc.Err()
}
