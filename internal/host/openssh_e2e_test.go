//go:build e2e

package host

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/migrate-tool/migrate/internal/testenv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// openSSH is a real OpenSSH sshd on a free 127.0.0.1 port.
type openSSH struct {
	Addr       string
	HostKey    ssh.PublicKey
	ClientKey  string
	KnownHosts string
	log        *bytes.Buffer
}

func startOpenSSH(t *testing.T) *openSSH {
	t.Helper()
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil || os.Geteuid() != 0 {
		testenv.Skip(t, "needs root and openssh-server")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	hostSigner, hostPEM := newKey(t)
	clientSigner, clientPEM := newKey(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hostKey := write("host_key", hostPEM)
	clientKey := write("client_key", clientPEM)
	auth := write("authorized_keys", ssh.MarshalAuthorizedKey(clientSigner.PublicKey()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := write("sshd_config", []byte(fmt.Sprintf(`ListenAddress %s
HostKey %s
PidFile %s/sshd.pid
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
Subsystem sftp internal-sftp
`, addr, hostKey, dir, auth)))
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &openSSH{Addr: addr, HostKey: hostSigner.PublicKey(), ClientKey: clientKey, log: &bytes.Buffer{}}
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfg)
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s: %v\n%s", addr, err, s.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.KnownHosts = write("known_hosts", []byte(knownhostsLine(addr, s.HostKey)))
	return s
}

func (s *openSSH) opts() Options {
	return Options{ConnectTimeout: 5 * time.Second, KnownHostsFile: s.KnownHosts, IdentityFiles: []string{s.ClientKey}, SSHConfigFile: "none"}
}

// Against real OpenSSH: exec, the agent deployed into the default root
// path over internal-sftp once, reused by a second connection, calls with
// streams, keepalives answered.
func TestOpenSSHAgent(t *testing.T) {
	ctx := testCtx(t)
	srv := startOpenSSH(t)
	bin, err := localAgentBinary("")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(RootAgentDir, bin.SHA256)
	if _, err := os.Stat(dir); err == nil {
		os.RemoveAll(dir) // left by an earlier run of this same test binary
	}
	// remove what this test creates, down to the directories it had to make
	var made []string
	for d := RootAgentDir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		for _, d := range made {
			os.Remove(d)
		}
	})

	opts := srv.opts()
	opts.KeepAlive = 50 * time.Millisecond
	spec := "ssh://root@" + srv.Addr
	h, err := Open(ctx, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := h.Exec(ctx, []string{"printf", "%s", "it's $HOME"}, nil, &out, nil); err != nil || out.String() != "it's $HOME" {
		t.Fatalf("exec: %v %q", err, out.String())
	}
	var res struct{ Said, Exe string }
	if err := h.Call(ctx, "hosttest.echo", map[string]string{"Say": "hi"}, &res); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "migrate")
	if res.Said != "hi" || res.Exe != want {
		t.Fatalf("agent answered %+v, want it run from %s", res, want)
	}
	if n, b := h.(SSH).AgentUploads(); n != 1 || b != bin.Size {
		t.Fatalf("uploads %d (%d bytes)", n, b)
	}
	st, _ := os.Stat(want)
	time.Sleep(300 * time.Millisecond) // several keepalive rounds
	var n int
	var up bytes.Buffer
	if err := h.CallStream(ctx, "hosttest.upper", nil, strings.NewReader("stream"), &up, &n); err != nil || up.String() != "STREAM" || n != 6 {
		t.Fatalf("stream after keepalives: %v %q %d", err, up.String(), n)
	}
	// more concurrent calls than sshd's MaxSessions (10) on one connection
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		go func() {
			var r struct{ Said string }
			err := h.Call(ctx, "hosttest.echo", map[string]string{"Say": "x"}, &r)
			if err == nil && r.Said != "x" {
				err = fmt.Errorf("got %q", r.Said)
			}
			errs <- err
		}()
	}
	for i := 0; i < 20; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent call: %v", err)
		}
	}
	h.Close()

	h2, err := Open(ctx, spec, srv.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if err := h2.Call(ctx, "hosttest.echo", map[string]string{"Say": "again"}, &res); err != nil {
		t.Fatal(err)
	}
	if n, b := h2.(SSH).AgentUploads(); n != 0 || b != 0 {
		t.Fatalf("second run uploaded %d times", n)
	}
	if st2, _ := os.Stat(want); !st2.ModTime().Equal(st.ModTime()) {
		t.Fatal("agent binary rewritten on the second run")
	}
	err = h2.Call(ctx, "hosttest.fail", nil, nil)
	if err == nil || err.Error() != "nothing to see" {
		t.Fatalf("remote error: %v", err)
	}
}

func TestOpenSSHHostKeys(t *testing.T) {
	ctx := testCtx(t)
	srv := startOpenSSH(t)
	spec := "root@" + srv.Addr
	opts := srv.opts()
	opts.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	var uk *UnknownHostKeyError
	if _, err := Open(ctx, spec, opts); !errors.As(err, &uk) || uk.Fingerprint != ssh.FingerprintSHA256(srv.HostKey) {
		t.Fatalf("unknown key: %v", err)
	}
	opts.AcceptNewHostKey = true
	h, err := Open(ctx, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	opts.AcceptNewHostKey = false
	if h, err = Open(ctx, spec, opts); err != nil {
		t.Fatalf("recorded key not accepted: %v", err)
	}
	h.Close()

	other, _ := newKey(t)
	os.WriteFile(opts.KnownHostsFile, []byte(knownhostsLine(srv.Addr, other.PublicKey())), 0o600)
	var ce *HostKeyChangedError
	if _, err := Open(ctx, spec, opts); !errors.As(err, &ce) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(other.PublicKey())) {
		t.Fatalf("changed key: %v", err)
	}
}
