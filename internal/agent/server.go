package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Call is one request as a handler sees it.
type Call struct {
	Method string
	Params json.RawMessage
	// In yields the bytes the caller streams with the request; it ends with
	// io.EOF when the caller's stream ends. Plain calls have an empty stream.
	In io.Reader
	// Out streams bytes back to the caller while the handler runs.
	Out io.Writer
	// Log goes to the agent's stderr, which the caller forwards to its log.
	Log *slog.Logger
}

// Decode unmarshals the request parameters into v.
func (c *Call) Decode(v any) error {
	if len(c.Params) == 0 || string(c.Params) == "null" {
		return nil
	}
	if err := json.Unmarshal(c.Params, v); err != nil {
		return fmt.Errorf("%s: bad parameters: %w", c.Method, err)
	}
	return nil
}

// Handler serves one method. Its result is marshalled to JSON; its error,
// with any hint and exit code attached, reaches the caller as a
// *RemoteError.
type Handler func(ctx context.Context, c *Call) (result any, err error)

var (
	registryMu sync.Mutex
	registry   = map[string]Handler{MethodPing: ping}
)

// MethodPing answers with the agent's build version. Callers use it to
// deploy and start the agent ahead of a step that must be quick.
const MethodPing = "agent.ping"

func ping(ctx context.Context, c *Call) (any, error) {
	return map[string]string{"version": Version}, nil
}

// Register makes h serve method in every agent built into this binary.
// Packages call it from init; method names are "area.verb".
func Register(method string, h Handler) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[method]; dup {
		panic("agent: method registered twice: " + method)
	}
	registry[method] = h
}

// Handlers returns a copy of the registered handlers.
func Handlers() map[string]Handler {
	registryMu.Lock()
	defer registryMu.Unlock()
	m := make(map[string]Handler, len(registry))
	for k, v := range registry {
		m[k] = v
	}
	return m
}

// Methods lists the registered method names, sorted.
func Methods() []string {
	var names []string
	for k := range Handlers() {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Version is reported in the hello frame; cmd sets it from the build.
var Version = "dev"

// Serve answers requests read from r, writing responses to w, until r
// ends (nil error) or the stream is broken.
func Serve(ctx context.Context, r io.Reader, w io.Writer, handlers map[string]Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fr := newFrameReader(r)
	fw := newFrameWriter(w)

	typ, payload, err := fr.next()
	if err != nil {
		if err == io.EOF {
			return &ProtocolError{"no hello from the caller"}
		}
		return err
	}
	if typ != frameHello {
		return &ProtocolError{fmt.Sprintf("expected hello, got %q frame", typ)}
	}
	if _, err := checkHello(payload, "caller"); err != nil {
		_ = fw.writeJSON(frameResponse, response{Error: &wireError{Message: err.Error()}})
		return err
	}
	if err := fw.writeJSON(frameHello, localHello(Version)); err != nil {
		return err
	}
	frames := make(chan frameOrErr)
	go readFrames(ctx, fr, frames)
	var pending *frameOrErr
	for {
		var f frameOrErr
		if pending != nil {
			f, pending = *pending, nil
		} else {
			f = <-frames
		}
		if f.err == io.EOF {
			return nil
		}
		if f.err != nil {
			return f.err
		}
		if f.typ != frameRequest {
			return &ProtocolError{fmt.Sprintf("expected a request, got %q frame", f.typ)}
		}
		var req request
		if err := json.Unmarshal(f.payload, &req); err != nil {
			return &ProtocolError{fmt.Sprintf("bad request: %v", err)}
		}
		next, err := serveCall(ctx, frames, fw, handlers, req, log)
		if err != nil {
			return err
		}
		pending = next
	}
}

type frameOrErr struct {
	typ     byte
	payload []byte
	err     error
}

// readFrames reads frames into ch (copying payloads) until an error, which
// is delivered last.
func readFrames(ctx context.Context, fr *frameReader, ch chan<- frameOrErr) {
	for {
		typ, payload, err := fr.next()
		f := frameOrErr{typ: typ, err: err}
		if err == nil {
			f.payload = append([]byte(nil), payload...)
		}
		select {
		case ch <- f:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// serveCall runs one handler while feeding it the caller's stream, sends
// its response, and reads the stream to its end frame. If the caller hangs
// up, the handler's context is cancelled.
//
// A frame that arrives after the call's stream ended belongs to what comes
// next; it is returned as next once the call is over.
func serveCall(ctx context.Context, frames <-chan frameOrErr, fw *frameWriter, handlers map[string]Handler, req request, log *slog.Logger) (next *frameOrErr, _ error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	call := &Call{Method: req.Method, Params: req.Params, In: pr, Out: chunkWriter{fw}, Log: log.With("method", req.Method)}
	done := make(chan error, 1)
	go func() {
		res, err := runHandler(ctx, handlers, call)
		pr.CloseWithError(errors.New("handler finished"))
		resp := response{ID: req.ID}
		if err == nil {
			resp.Result, err = json.Marshal(res)
		}
		if err != nil {
			resp.Result = nil
			resp.Error = &wireError{Message: err.Error(), Hint: hint.Of(err)}
			if c := hint.Code(err); c != hint.ExitFailed {
				resp.ExitCodeSet(c)
			}
		}
		done <- fw.writeJSON(frameResponse, resp)
	}()
	// Feed the stream to the handler. The data is written from a separate
	// goroutine so that a hang-up is seen even while the handler is not
	// reading.
	data := make(chan []byte, 4)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for b := range data {
			// After the handler returns the pipe is closed and the rest
			// of the stream is discarded.
			_, _ = pw.Write(b)
		}
		pw.Close()
	}()
	ended := false
	fail := func(err error) (*frameOrErr, error) {
		cancel()
		if !ended {
			close(data)
		}
		pw.CloseWithError(err)
		<-done
		return nil, err
	}
	for {
		select {
		case err := <-done:
			if !ended {
				// Response sent; read the rest of the stream up to its end.
				for f := range frames {
					if f.err != nil {
						close(data)
						return nil, f.err
					}
					if f.typ == frameEnd {
						break
					}
				}
				close(data)
			}
			<-fed
			return nil, err
		case f := <-frames:
			if ended && f.err == nil {
				// The caller only sends more after our response.
				err := <-done
				return &f, err
			}
			if ended && f.err == io.EOF {
				// The caller closed its side after its stream ended, maybe
				// as soon as it read our response: not an error. Stop a
				// handler that is still running and end the session.
				cancel()
				err := <-done
				<-fed
				return &f, err
			}
			if f.err != nil {
				err := f.err
				if err == io.EOF {
					err = &ProtocolError{"caller hung up in the middle of a call"}
				}
				return fail(err)
			}
			switch {
			case f.typ == frameData && !ended:
				data <- f.payload
			case f.typ == frameEnd && !ended:
				ended = true
				close(data)
			default:
				return fail(&ProtocolError{fmt.Sprintf("unexpected %q frame inside a call", f.typ)})
			}
		}
	}
}

// ExitCodeSet records a non-default exit code for the error.
func (r *response) ExitCodeSet(code int) {
	if r.Error != nil {
		r.Error.ExitCode = code
	}
}

func runHandler(ctx context.Context, handlers map[string]Handler, c *Call) (res any, err error) {
	h, ok := handlers[c.Method]
	if !ok {
		return nil, hint.With(fmt.Errorf("unknown method %q", c.Method), "the agent on the host is a different build: rerun to redeploy it")
	}
	defer func() {
		if p := recover(); p != nil {
			c.Log.Error("handler panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("%s: internal error: %v", c.Method, p)
		}
	}()
	return h(ctx, c)
}

// Typed adapts fn, which takes its parameters decoded, to a Handler.
func Typed[P, R any](fn func(ctx context.Context, p P) (R, error)) Handler {
	return func(ctx context.Context, c *Call) (any, error) {
		var p P
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return fn(ctx, p)
	}
}
