package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

func testHandlers() map[string]Handler {
	return map[string]Handler{
		"test.echo": func(ctx context.Context, c *Call) (any, error) {
			var p struct{ Say string }
			if err := c.Decode(&p); err != nil {
				return nil, err
			}
			return map[string]string{"said": p.Say}, nil
		},
		"test.sum": func(ctx context.Context, c *Call) (any, error) {
			h := sha256.New()
			n, err := io.Copy(h, c.In)
			if err != nil {
				return nil, err
			}
			return map[string]any{"n": n, "sha": hex.EncodeToString(h.Sum(nil))}, nil
		},
		"test.emit": func(ctx context.Context, c *Call) (any, error) {
			var p struct{ N int }
			_ = c.Decode(&p)
			_, err := c.Out.Write(bytes.Repeat([]byte("x"), p.N))
			return nil, err
		},
		"test.fail": func(ctx context.Context, c *Call) (any, error) {
			return nil, hint.WithExit(hint.With(errors.New("disk full on /srv"), "free some space"), 3)
		},
		"test.ignore-input": func(ctx context.Context, c *Call) (any, error) {
			return "ok", nil
		},
		"test.block": func(ctx context.Context, c *Call) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
}

func withTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCallRoundTrip(t *testing.T) {
	ctx := withTimeout(t)
	c := Pipe(ctx, testHandlers(), nil)
	defer c.Close()
	var res map[string]string
	for i := 0; i < 3; i++ { // several calls on one session
		if err := c.Call(ctx, "test.echo", map[string]string{"Say": fmt.Sprint("hi", i)}, &res); err != nil {
			t.Fatal(err)
		}
		if res["said"] != fmt.Sprint("hi", i) {
			t.Fatalf("got %v", res)
		}
	}
	if os, arch, _ := c.Peer(); os == "" || arch == "" {
		t.Fatalf("peer not recorded: %q %q", os, arch)
	}
}

func TestStreams(t *testing.T) {
	ctx := withTimeout(t)
	c := Pipe(ctx, testHandlers(), nil)
	defer c.Close()
	data := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB, several frames
	var res struct {
		N   int64
		Sha string
	}
	if err := c.CallStream(ctx, "test.sum", nil, bytes.NewReader(data), nil, &res); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if res.N != int64(len(data)) || res.Sha != hex.EncodeToString(want[:]) {
		t.Fatalf("server saw %d bytes %s", res.N, res.Sha)
	}
	var out bytes.Buffer
	if err := c.CallStream(ctx, "test.emit", map[string]int{"N": 3 << 20}, nil, &out, nil); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 3<<20 {
		t.Fatalf("got %d bytes back", out.Len())
	}
	// A handler that ignores its input: the rest of the stream is discarded
	// and the session stays usable.
	var s string
	if err := c.CallStream(ctx, "test.ignore-input", nil, bytes.NewReader(data), nil, &s); err != nil || s != "ok" {
		t.Fatalf("ignore-input: %q %v", s, err)
	}
	if err := c.Call(ctx, "test.echo", map[string]string{"Say": "still"}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteErrorKeepsHintAndExitCode(t *testing.T) {
	ctx := withTimeout(t)
	c := Pipe(ctx, testHandlers(), nil)
	defer c.Close()
	err := c.Call(ctx, "test.fail", nil, nil)
	if err == nil || err.Error() != "disk full on /srv" {
		t.Fatalf("err = %v", err)
	}
	if h := hint.Of(err); h != "free some space" {
		t.Fatalf("hint = %q", h)
	}
	if code := hint.Code(err); code != 3 {
		t.Fatalf("exit code = %d", code)
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Method != "test.fail" {
		t.Fatalf("not a RemoteError: %#v", err)
	}
	// The session survives a handler error.
	if err := c.Call(ctx, "test.echo", nil, nil); err != nil {
		t.Fatal(err)
	}
	err = c.Call(ctx, "no.such", nil, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown method "no.such"`) || hint.Of(err) == "" {
		t.Fatalf("unknown method: %v (hint %q)", err, hint.Of(err))
	}
}

func frame(typ byte, payload string) []byte {
	b := make([]byte, 5+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	copy(b[5:], payload)
	return b
}

// fakeAgent answers the client with fixed bytes, whatever it is sent.
type fakeAgent struct {
	out io.Reader
}

func (f fakeAgent) client() *Client {
	return NewClient(f.out, nopCloser{io.Discard}, nil)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func TestClientRejectsMalformedStreams(t *testing.T) {
	hello := string(frame(frameHello, `{"proto":1}`))
	tests := []struct {
		name    string
		stream  string
		wantErr string
	}{
		{"not an agent", "bash: /var/lib/migrate/agent/x/migrate: No such file or directory\n", "unknown frame type 'b'"},
		{"empty", "", "exited before saying hello"},
		{"truncated header", "H\x00\x00", "truncated frame header (3 of 5 bytes)"},
		{"truncated payload", "H\x00\x00\x00\x20{\"pro", `truncated 'H' frame (5 of 32 bytes)`},
		{"oversize", "H\x7f\xff\xff\xff", "exceeds the"},
		{"wrong version", string(frame(frameHello, `{"proto":99}`)), "agent speaks protocol version 99"},
		{"bad hello json", string(frame(frameHello, `{proto`)), "bad hello from agent"},
		{"hangs up mid call", hello, "exited in the middle of a call"},
		{"truncated response", hello + "R\x00\x00\x01\x00{}", "truncated 'R' frame"},
		{"bad response json", hello + string(frame(frameResponse, "not json")), "bad response"},
		{"unexpected frame", hello + string(frame(frameRequest, "{}")), "unexpected 'Q' frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := withTimeout(t)
			c := fakeAgent{strings.NewReader(tt.stream)}.client()
			err := c.Call(ctx, "test.echo", nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			// The client is now unusable, and says so instead of hanging.
			if err2 := c.Call(ctx, "test.echo", nil, nil); err2 == nil || !strings.Contains(err2.Error(), "unusable") {
				t.Fatalf("second call: %v", err2)
			}
		})
	}
}

func TestServerRejectsMalformedStreams(t *testing.T) {
	hello := string(frame(frameHello, `{"proto":1}`))
	tests := []struct {
		name    string
		stream  string
		wantErr string
	}{
		{"no hello", "", "no hello"},
		{"garbage", "GET / HTTP/1.1\r\n", "unknown frame type 'G'"},
		{"request first", string(frame(frameRequest, `{}`)), "expected hello"},
		{"old version", string(frame(frameHello, `{"proto":0}`)), "caller speaks protocol version 0"},
		{"bad request", hello + string(frame(frameRequest, `{`)), "bad request"},
		{"data outside call", hello + string(frame(frameData, `x`)), "expected a request"},
		{"truncated in call", hello + string(frame(frameRequest, `{"method":"test.sum"}`)) + "D\x00\x00\x00\x09abc", "truncated 'D' frame (3 of 9 bytes)"},
		{"hang up in call", hello + string(frame(frameRequest, `{"method":"test.sum"}`)), "hung up in the middle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := withTimeout(t)
			err := Serve(ctx, strings.NewReader(tt.stream), io.Discard, testHandlers(), nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("not a ProtocolError: %T", err)
			}
		})
	}
	// A clean end after hello is not an error.
	if err := Serve(withTimeout(t), strings.NewReader(hello), io.Discard, nil, nil); err != nil {
		t.Fatalf("clean end: %v", err)
	}
}

func TestCancelUnblocksCall(t *testing.T) {
	ctx := withTimeout(t)
	c := Pipe(ctx, testHandlers(), nil)
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err := c.Call(cctx, "test.block", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func FuzzServe(f *testing.F) {
	hello := string(frame(frameHello, `{"proto":1}`))
	f.Add([]byte(hello + string(frame(frameRequest, `{"id":1,"method":"test.echo","params":{"Say":"x"}}`)) + string(frame(frameEnd, ""))))
	f.Add([]byte(hello + string(frame(frameRequest, `{"method":"test.sum"}`)) + string(frame(frameData, "abc")) + string(frame(frameEnd, ""))))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h := testHandlers()
		delete(h, "test.block")
		done := make(chan struct{})
		go func() {
			_ = Serve(ctx, bytes.NewReader(b), io.Discard, h, nil)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatalf("Serve hung on %q", b)
		}
	})
}

// An input that never ends (an idle pipe) does not hold up a call whose
// handler has answered, and the session stays usable.
func TestIdleInputDoesNotHoldTheCall(t *testing.T) {
	ctx := withTimeout(t)
	c := Pipe(ctx, testHandlers(), nil)
	defer c.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan error, 1)
	go func() {
		var s string
		done <- c.CallStream(ctx, "test.ignore-input", nil, pr, nil, &s)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call waited for its idle input")
	}
	if err := c.Call(ctx, "test.echo", map[string]string{"Say": "next"}, nil); err != nil {
		t.Fatalf("next call: %v", err)
	}
	// Input that arrives later is not sent into the next call.
	pw.Write([]byte("late"))
	if err := c.Call(ctx, "test.echo", nil, nil); err != nil {
		t.Fatalf("call after late input: %v", err)
	}
}
