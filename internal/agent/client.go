package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/migrate-tool/migrate/internal/hint"
)

// RemoteError is an error returned by a handler on the agent's side.
type RemoteError struct {
	Method  string
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// Client calls an agent over a pair of streams. Calls are serialised: one
// Client runs one call at a time. It is safe for concurrent use.
type Client struct {
	fr  *frameReader
	fw  *frameWriter
	w   io.Closer
	log *slog.Logger

	mu     sync.Mutex
	hello  *hello
	nextID uint64
	broken error
}

// NewClient returns a client that reads the agent's frames from r (its
// stdout) and writes to w (its stdin). Close closes w.
func NewClient(r io.Reader, w io.WriteCloser, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Client{fr: newFrameReader(r), fw: newFrameWriter(w), w: w, log: log}
}

// Close ends the session: the agent sees the end of its input and exits.
func (c *Client) Close() error { return c.w.Close() }

// Peer returns what the agent said of itself in its hello (after the first call).
func (c *Client) Peer() (os, arch, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hello == nil {
		return "", "", ""
	}
	return c.hello.OS, c.hello.Arch, c.hello.Version
}

func (c *Client) handshake() error {
	if c.hello != nil {
		return nil
	}
	if err := c.fw.writeJSON(frameHello, localHello(Version)); err != nil {
		// The other side is gone already (not an agent, or it died at
		// start): say so as a protocol failure, like a missing hello.
		return &ProtocolError{fmt.Sprintf("the agent exited before the hello could be sent (%v)", err)}
	}
	typ, payload, err := c.fr.next()
	if err != nil {
		if err == io.EOF {
			return &ProtocolError{"the agent exited before saying hello (see its stderr)"}
		}
		return err
	}
	if typ == frameResponse {
		var resp response
		if json.Unmarshal(payload, &resp) == nil && resp.Error != nil {
			return &ProtocolError{resp.Error.Message}
		}
	}
	if typ != frameHello {
		return &ProtocolError{fmt.Sprintf("expected hello, got %q frame", typ)}
	}
	h, err := checkHello(payload, "agent")
	if err != nil {
		return err
	}
	c.hello = &h
	return nil
}

// Call runs method with params and decodes the result into result (which
// may be nil).
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	return c.CallStream(ctx, method, params, nil, nil, result)
}

// CallStream is Call with a byte stream each way: in (may be nil) is sent to
// the handler's Call.In, and what the handler writes to Call.Out is copied
// to out (may be nil to discard it).
func (c *Client) CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) (err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return fmt.Errorf("agent session unusable after an earlier failure: %w", c.broken)
	}
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if _, remote := asRemote(err); err != nil && !remote {
			c.broken = err
		}
	}()
	// Cancelling the context closes the session, which unblocks every read
	// and write below.
	stop := context.AfterFunc(ctx, func() { c.w.Close() })
	defer stop()

	if err := c.handshake(); err != nil {
		return err
	}
	c.nextID++
	req := request{ID: c.nextID, Method: method}
	if params != nil {
		if req.Params, err = json.Marshal(params); err != nil {
			return fmt.Errorf("%s: encode parameters: %w", method, err)
		}
	}
	if err := c.fw.writeJSON(frameRequest, req); err != nil {
		return fmt.Errorf("%s: send request: %w", method, err)
	}
	st := &stream{}
	inDone := make(chan error, 1)
	go func() { inDone <- c.sendStream(in, st) }()

	resp, readErr := c.readResponse(out)
	// The call is over: end the caller's stream now, whatever the sending
	// goroutine is doing (it may be blocked reading an idle input, which
	// must not hold the call up). It sends nothing more afterwards.
	var inErr error
	select {
	case inErr = <-inDone:
	default:
		if err := st.end(c.fw); err != nil && readErr == nil {
			readErr = err
		}
	}
	if readErr != nil {
		return fmt.Errorf("%s: %w", method, readErr)
	}
	if resp.Error != nil {
		var e error = &RemoteError{Method: method, Message: resp.Error.Message}
		if resp.Error.Hint != "" {
			e = hint.With(e, resp.Error.Hint)
		}
		if resp.Error.ExitCode != 0 {
			e = hint.WithExit(e, resp.Error.ExitCode)
		}
		return e
	}
	if inErr != nil {
		return fmt.Errorf("%s: send stream: %w", method, inErr)
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("%s: decode result: %w", method, err)
		}
	}
	return nil
}

// stream is the caller's side of one call's byte stream. Once ended, no
// more data frames are written for it.
type stream struct {
	mu    sync.Mutex
	ended bool
}

// write sends one data frame unless the stream has ended.
func (s *stream) write(fw *frameWriter, b []byte) (ended bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return true, nil
	}
	return false, fw.write(frameData, b)
}

// end sends the end frame, once.
func (s *stream) end(fw *frameWriter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil
	}
	s.ended = true
	return fw.write(frameEnd, nil)
}

// sendStream sends in as data frames and then the end frame, unless the
// call ends first (see CallStream).
func (c *Client) sendStream(in io.Reader, st *stream) error {
	var err error
	if in != nil {
		buf := make([]byte, 256<<10)
		for {
			n, rerr := in.Read(buf)
			if n > 0 {
				ended, werr := st.write(c.fw, buf[:n])
				if werr != nil {
					return werr
				}
				if ended {
					return nil
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				err = rerr
				break
			}
		}
	}
	if werr := st.end(c.fw); werr != nil {
		return werr
	}
	return err
}

func (c *Client) readResponse(out io.Writer) (*response, error) {
	for {
		typ, payload, err := c.fr.next()
		if err != nil {
			if err == io.EOF {
				return nil, &ProtocolError{"the agent exited in the middle of a call (see its stderr)"}
			}
			return nil, err
		}
		switch typ {
		case frameData:
			if out != nil {
				if _, err := out.Write(payload); err != nil {
					return nil, fmt.Errorf("write stream: %w", err)
				}
			}
		case frameResponse:
			var resp response
			if err := json.Unmarshal(payload, &resp); err != nil {
				return nil, &ProtocolError{fmt.Sprintf("bad response: %v", err)}
			}
			return &resp, nil
		default:
			return nil, &ProtocolError{fmt.Sprintf("unexpected %q frame in a response", typ)}
		}
	}
}

func asRemote(err error) (*RemoteError, bool) {
	for e := err; e != nil; {
		if r, ok := e.(*RemoteError); ok {
			return r, true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return nil, false
		}
		e = u.Unwrap()
	}
	return nil, false
}

// Pipe runs an agent serving handlers in this process and returns a client
// connected to it. Closing the client stops the server.
func Pipe(ctx context.Context, handlers map[string]Handler, log *slog.Logger) *Client {
	toServer, fromClient := io.Pipe()
	toClient, fromServer := io.Pipe()
	go func() {
		err := Serve(ctx, toServer, fromServer, handlers, log)
		toServer.CloseWithError(io.ErrClosedPipe)
		fromServer.CloseWithError(errOrEOF(err))
	}()
	return NewClient(toClient, fromClient, log)
}

func errOrEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}
