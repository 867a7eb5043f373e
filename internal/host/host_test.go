package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/migrate-tool/migrate/internal/testenv"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/hint"
)

func init() {
	agent.Register("hosttest.echo", func(ctx context.Context, c *agent.Call) (any, error) {
		var p struct{ Say string }
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		exe, _ := os.Executable()
		return map[string]any{"said": p.Say, "pid": os.Getpid(), "exe": exe}, nil
	})
	agent.Register("hosttest.upper", func(ctx context.Context, c *agent.Call) (any, error) {
		b, err := io.ReadAll(c.In)
		if err != nil {
			return nil, err
		}
		_, err = c.Out.Write(bytes.ToUpper(b))
		return len(b), err
	})
	agent.Register("hosttest.fail", func(ctx context.Context, c *agent.Call) (any, error) {
		return nil, hint.With(errors.New("nothing to see"), "look elsewhere")
	})
}

// TestMain lets the test binary double as the deployed agent: the test
// SSH server runs "<uploaded copy> agent".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		if err := agent.Serve(context.Background(), os.Stdin, os.Stdout, agent.Handlers(), log); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// opts returns options that trust srv and deploy into a temp dir.
func (s *testServer) opts(t *testing.T) Options {
	return Options{
		ConnectTimeout: 5 * time.Second,
		KnownHostsFile: knownHostsFor(t, s.Addr, s.HostKey.PublicKey()),
		IdentityFiles:  []string{s.ClientKey},
		SSHConfigFile:  "none",
		AgentDir:       filepath.Join(t.TempDir(), "agent"),
	}
}

func (s *testServer) spec() string { return "ssh://tester@" + s.Addr }

func TestExec(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t)
	h, err := Open(ctx, srv.spec(), srv.opts(t))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.IsLocal() || h.String() != srv.spec() {
		t.Fatalf("IsLocal %v String %q", h.IsLocal(), h.String())
	}
	var out bytes.Buffer
	if err := h.Exec(ctx, []string{"printf", "%s|", "a b", "it's", "$HOME"}, nil, &out, nil); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "a b|it's|$HOME|" {
		t.Fatalf("quoting: got %q", got)
	}
	out.Reset()
	if err := h.Exec(ctx, []string{"cat"}, strings.NewReader("piped"), &out, nil); err != nil || out.String() != "piped" {
		t.Fatalf("stdin: %v %q", err, out.String())
	}
	err = h.Exec(ctx, []string{"sh", "-c", "exit 7"}, nil, nil, nil)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Status != 7 || err.Error() != "sh exited with status 7" {
		t.Fatalf("exit status: %v", err)
	}
	// a cancelled command returns promptly
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.Exec(cctx, []string{"sleep", "20"}, nil, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancel: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cancel took %s", time.Since(start))
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1 shared by every session", n)
	}
}

func TestAgentDeployedOnceAndReused(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t)
	opts := srv.opts(t)
	h, err := Open(ctx, srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Said string
		PID  int
		Exe  string
	}
	if err := h.Call(ctx, "hosttest.echo", map[string]string{"Say": "hello"}, &res); err != nil {
		t.Fatal(err)
	}
	sh := h.(SSH)
	path := sh.AgentPath()
	bin, _ := localAgentBinary("")
	wantPath := filepath.Join(opts.AgentDir, bin.SHA256, "migrate")
	if res.Said != "hello" || res.PID == os.Getpid() || res.Exe != wantPath || path != wantPath {
		t.Fatalf("call ran in %+v, agent path %s, want a separate process at %s", res, path, wantPath)
	}
	if n, bytes := sh.AgentUploads(); n != 1 || bytes != bin.Size {
		t.Fatalf("uploads = %d (%d bytes), want 1 (%d)", n, bytes, bin.Size)
	}
	st, err := os.Stat(wantPath)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("deployed binary: %v %v", err, st.Mode())
	}
	leftovers, _ := filepath.Glob(filepath.Join(opts.AgentDir, bin.SHA256, ".migrate.tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temp files left: %v", leftovers)
	}
	// a second call on the same host: no probe, no upload
	execs := len(srv.Execs())
	if err := h.Call(ctx, "hosttest.echo", map[string]string{"Say": "again"}, &res); err != nil || res.Said != "again" {
		t.Fatalf("second call: %v %+v", err, res)
	}
	if got := srv.Execs()[execs:]; len(got) != 1 || !strings.HasSuffix(got[0], "/migrate agent") {
		t.Fatalf("second call ran %q, want only the agent", got)
	}
	h.Close()

	// a second run (new connection) finds the binary and sends nothing
	old := st.ModTime()
	time.Sleep(10 * time.Millisecond)
	h2, err := Open(ctx, srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if err := h2.Call(ctx, "hosttest.echo", map[string]string{"Say": "run2"}, &res); err != nil {
		t.Fatal(err)
	}
	if n, b := h2.(SSH).AgentUploads(); n != 0 || b != 0 {
		t.Fatalf("second run uploaded %d times (%d bytes)", n, b)
	}
	if st2, _ := os.Stat(wantPath); !st2.ModTime().Equal(old) {
		t.Fatalf("agent binary rewritten: mtime %v -> %v", old, st2.ModTime())
	}

	// a damaged binary of the right size is replaced
	data, _ := os.ReadFile(wantPath)
	data[len(data)/2] ^= 0xff
	os.WriteFile(wantPath, data, 0o755)
	h3, err := Open(ctx, srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h3.Close()
	if err := h3.Call(ctx, "hosttest.echo", nil, &res); err != nil {
		t.Fatal(err)
	}
	if n, _ := h3.(SSH).AgentUploads(); n != 1 {
		t.Fatalf("damaged binary: uploads = %d, want 1", n)
	}
}

func TestCallStreamAndRemoteError(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t)
	for _, spec := range []string{"local", srv.spec()} {
		t.Run(spec, func(t *testing.T) {
			h, err := Open(ctx, spec, srv.opts(t))
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			in := strings.Repeat("abc", 500_000)
			var out bytes.Buffer
			var n int
			if err := h.CallStream(ctx, "hosttest.upper", nil, strings.NewReader(in), &out, &n); err != nil {
				t.Fatal(err)
			}
			if n != len(in) || out.String() != strings.ToUpper(in) {
				t.Fatalf("stream: n=%d out=%d bytes", n, out.Len())
			}
			err = h.Call(ctx, "hosttest.fail", nil, nil)
			if err == nil || err.Error() != "nothing to see" || hint.Of(err) != "look elsewhere" {
				t.Fatalf("remote error: %v (hint %q)", err, hint.Of(err))
			}
			err = h.Call(ctx, "hosttest.nosuch", nil, nil)
			if err == nil || !strings.Contains(err.Error(), "hosttest.nosuch") {
				t.Fatalf("unknown method: %v", err)
			}
		})
	}
}

func TestAgentNotRunnable(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t)
	opts := srv.opts(t)
	// an ELF for another architecture is refused before any upload
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	data[18], data[19] = 183, 0 // e_machine = EM_AARCH64
	opts.AgentBinary = filepath.Join(t.TempDir(), "migrate-arm64")
	os.WriteFile(opts.AgentBinary, data, 0o755)
	h, err := Open(ctx, srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	err = h.Call(ctx, "hosttest.echo", nil, nil)
	want := fmt.Sprintf("%s is a x86_64 machine but the agent binary %s is built for aarch64", srv.spec(), opts.AgentBinary)
	if err == nil || err.Error() != want || !strings.Contains(hint.Of(err), "GOARCH") {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if n, _ := h.(SSH).AgentUploads(); n != 0 {
		t.Fatal("uploaded a binary of the wrong architecture")
	}
	// not an ELF at all
	opts.AgentBinary = filepath.Join(t.TempDir(), "script")
	os.WriteFile(opts.AgentBinary, []byte("#!/bin/sh\n"), 0o755)
	h2, err := Open(ctx, srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if err := h2.Call(ctx, "hosttest.echo", nil, nil); err == nil || !strings.Contains(err.Error(), "is not a Linux ELF executable") {
		t.Fatalf("non-ELF: %v", err)
	}
}

func TestConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	_, err = Open(testCtx(t), "root@"+addr, Options{ConnectTimeout: 3 * time.Second, SSHConfigFile: "none",
		KnownHostsFile: filepath.Join(t.TempDir(), "kh"), IdentityFiles: []string{startServer(t).ClientKey}})
	want := fmt.Sprintf("connect %s: connection refused (after ", addr)
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v, want %s...", err, want)
	}
	if !strings.Contains(hint.Of(err), "sshd listens on "+addr) {
		t.Fatalf("hint %q", hint.Of(err))
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}

func TestConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and never speak SSH
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = Open(testCtx(t), "root@"+ln.Addr().String(), Options{ConnectTimeout: 300 * time.Millisecond, SSHConfigFile: "none",
		KnownHostsFile: filepath.Join(t.TempDir(), "kh"), IdentityFiles: []string{startServer(t).ClientKey}})
	took := time.Since(start)
	want := fmt.Sprintf("connect %s: ssh handshake timed out (after 3", ln.Addr())
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want %s...", err, want)
	}
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("took %s with a 300ms timeout", took)
	}
}

func TestAuthFailure(t *testing.T) {
	srv := startServer(t)
	opts := srv.opts(t)
	other := startServer(t) // its client key is not accepted by srv
	opts.IdentityFiles = []string{other.ClientKey}
	t.Setenv("SSH_AUTH_SOCK", "")
	_, err := Open(testCtx(t), srv.spec(), opts)
	want := fmt.Sprintf(`ssh %s: authentication failed for user "tester" (offered 1 key(s))`, srv.Addr)
	if err == nil || err.Error() != want || !strings.Contains(hint.Of(err), "-i FILE") {
		t.Fatalf("got %v (hint %q), want %s", err, hint.Of(err), want)
	}
	opts.IdentityFiles = []string{filepath.Join(t.TempDir(), "missing")}
	if _, err := Open(testCtx(t), srv.spec(), opts); err == nil || !strings.Contains(err.Error(), "read identity") {
		t.Fatalf("missing -i file: %v", err)
	}
}

func TestProxyJumpAndSSHConfig(t *testing.T) {
	ctx := testCtx(t)
	jump := startServer(t)
	clientKey := jump.ClientKey
	signer, _ := loadKey(clientKey)
	hostKey, _ := newKey(t)
	target := startServerWith(t, "127.0.0.1:0", hostKey, signer.PublicKey(), clientKey)
	_, jport, _ := net.SplitHostPort(jump.Addr)
	_, tport, _ := net.SplitHostPort(target.Addr)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
Host bastion
  HostName 127.0.0.1
  Port %s
  User jumper
Host inner
  HostName 127.0.0.1
  Port %s
  User tester
  ProxyJump bastion
Host *
  IdentityFile %s
`, jport, tport, clientKey)), 0o600)
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(knownhostsLine(jump.Addr, jump.HostKey.PublicKey())+knownhostsLine(target.Addr, hostKey.PublicKey())), 0o600)
	h, err := Open(ctx, "inner", Options{SSHConfigFile: cfg, KnownHostsFile: kh, AgentDir: filepath.Join(dir, "agent")})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var out bytes.Buffer
	if err := h.Exec(ctx, []string{"echo", "inside"}, nil, &out, nil); err != nil || out.String() != "inside\n" {
		t.Fatalf("exec through jump: %v %q", err, out.String())
	}
	if jump.forwards.Load() != 1 || len(jump.Execs()) != 0 || len(target.Execs()) != 1 {
		t.Fatalf("forwards=%d jump execs=%v target execs=%v", jump.forwards.Load(), jump.Execs(), target.Execs())
	}
}

func TestKeepAlive(t *testing.T) {
	srv := startServer(t)
	opts := srv.opts(t)
	opts.KeepAlive = 20 * time.Millisecond
	h, err := Open(testCtx(t), srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.keepalives.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no keepalives sent")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLocalExec(t *testing.T) {
	ctx := testCtx(t)
	h, err := Open(ctx, "local", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := h.Exec(ctx, []string{"echo", "a b"}, nil, &out, nil); err != nil || out.String() != "a b\n" {
		t.Fatalf("%v %q", err, out.String())
	}
	var ee *ExitError
	if err := h.Exec(ctx, []string{"false"}, nil, nil, nil); !errors.As(err, &ee) || ee.Status != 1 {
		t.Fatalf("false: %v", err)
	}
	var res struct{ Said string }
	if err := h.Call(ctx, "hosttest.echo", map[string]string{"Say": "local"}, &res); err != nil || res.Said != "local" {
		t.Fatalf("local call: %v %+v", err, res)
	}
}

// A binary that is not a migrate agent fails the call with what the
// session reported, instead of hanging.
func TestAgentNotMigrate(t *testing.T) {
	srv := startServer(t)
	opts := srv.opts(t)
	opts.AgentBinary = filepath.Join(t.TempDir(), "fake")
	// a Linux ELF of the right machine that prints garbage and exits 3
	data, err := os.ReadFile("/bin/sh")
	if err != nil {
		testenv.Skip(t, "no /bin/sh")
	}
	os.WriteFile(opts.AgentBinary, data, 0o755)
	h, err := Open(testCtx(t), srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	start := time.Now()
	err = h.Call(testCtx(t), "hosttest.echo", nil, nil)
	// sh reads the hello frame as a script, fails and exits non-zero
	if err == nil || !strings.Contains(err.Error(), "agent protocol") || !strings.Contains(err.Error(), "exited with status") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
	t.Log(err)
}

// An agent that never says anything is given up on after helloTimeout.
func TestSilentAgent(t *testing.T) {
	old := helloTimeout
	helloTimeout = 300 * time.Millisecond
	defer func() { helloTimeout = old }()
	srv := startServer(t)
	srv.hangAgent.Store(true)
	h, err := Open(testCtx(t), srv.spec(), srv.opts(t))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	start := time.Now()
	err = h.Call(testCtx(t), "hosttest.echo", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "/migrate said nothing within 300ms") {
		t.Fatalf("got %v", err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("took %s", took)
	}
}
