package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/hint"
)

// Call runs one agent request on the host.
func (h *sshHost) Call(ctx context.Context, method string, params, result any) error {
	return h.CallStream(ctx, method, params, nil, nil, result)
}

// CallStream deploys the agent if needed, then runs `<agent> agent` in a
// new session on the shared connection and makes one call over its
// stdin/stdout. The agent's stderr goes to the logger.
func (h *sshHost) CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error {
	bin, err := h.deploy(ctx)
	if err != nil {
		return err
	}
	s, release, err := h.session(ctx)
	if err != nil {
		return err
	}
	defer release()
	defer s.Close()
	stdin, err := s.StdinPipe()
	if err != nil {
		return fmt.Errorf("ssh %s: %w", h.spec.Raw, err)
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return fmt.Errorf("ssh %s: %w", h.spec.Raw, err)
	}
	stderr := newLogWriter(ctx, h.log)
	s.Stderr = stderr
	argv := []string{bin, "agent"}
	if h.log.Enabled(ctx, slog.LevelDebug) {
		argv = append(argv, "-v")
	}
	if err := s.Start(ShellQuote(argv)); err != nil {
		return fmt.Errorf("ssh %s: start agent: %w", h.spec.Raw, err)
	}
	start := time.Now()
	// An agent answers its hello at once; one that says nothing (a hung
	// or foreign binary) would otherwise block the call forever.
	var mute atomic.Bool
	silent := time.AfterFunc(helloTimeout, func() {
		mute.Store(true)
		s.Close()
	})
	c := agent.NewClient(&firstByte{r: stdout, seen: func() { silent.Stop() }}, stdin, h.log)
	callErr := c.CallStream(ctx, method, params, in, out, result)
	c.Close()
	silent.Stop()
	h.log.Debug("agent call", "method", method, "took", time.Since(start).Round(time.Millisecond), "err", callErr)

	// The agent exits once its stdin ends; do not wait forever for one
	// that does not.
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	var waitErr error
	select {
	case waitErr = <-done:
	case <-time.After(5 * time.Second):
		s.Signal("KILL")
		s.Close()
		waitErr = errors.New("agent did not exit after the call")
	}
	stderr.Flush()
	if callErr == nil {
		return nil
	}
	if ctx.Err() != nil {
		return callErr
	}
	if mute.Load() {
		return hint.With(fmt.Errorf("%s: the agent %s said nothing within %s", h.spec.Raw, bin, helloTimeout),
			"check that the binary there is a migrate build and that the host is not overloaded")
	}
	var pe *agent.ProtocolError
	if errors.As(callErr, &pe) {
		// The agent died or is not a migrate agent: say what the session
		// reported.
		detail := ""
		if waitErr != nil {
			detail = "; " + sessionError(waitErr, argv).Error()
		}
		if last := stderr.Last(); last != "" {
			detail += "; stderr: " + last
		}
		return fmt.Errorf("%s: %w%s", h.spec.Raw, callErr, detail)
	}
	return callErr
}

// helloTimeout bounds the wait for the agent's first byte (a variable for
// tests).
var helloTimeout = 30 * time.Second

// firstByte calls seen once the first byte has been read from r.
type firstByte struct {
	r    io.Reader
	seen func()
	once sync.Once
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.once.Do(f.seen)
	}
	return n, err
}

// logWriter forwards the agent's stderr line by line to a logger,
// keeping the level of slog text lines ("level=WARN ...").
type logWriter struct {
	ctx  context.Context
	log  *slog.Logger
	mu   sync.Mutex
	buf  bytes.Buffer
	last string
}

func newLogWriter(ctx context.Context, log *slog.Logger) *logWriter {
	return &logWriter{ctx: context.WithoutCancel(ctx), log: log}
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.Reset()
			w.buf.WriteString(line)
			break
		}
		w.emit(strings.TrimRight(line, "\r\n"))
	}
	return len(p), nil
}

// Flush logs a final unterminated line.
func (w *logWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.emit(w.buf.String())
		w.buf.Reset()
	}
}

// Last returns the last non-empty line written.
func (w *logWriter) Last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *logWriter) emit(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	w.last = line
	level := slog.LevelWarn
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "level="); ok {
			var l slog.Level
			if l.UnmarshalText([]byte(v)) == nil {
				level = l
			}
			break
		}
	}
	w.log.Log(w.ctx, level, "agent: "+line)
}
