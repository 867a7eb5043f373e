package host

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testServer is an in-process SSH server on 127.0.0.1: exec requests run
// under `sh -c` on this machine, the sftp subsystem is pkg/sftp's server.
type testServer struct {
	Addr       string
	HostKey    ssh.Signer
	ClientKey  string // private key file accepted by the server
	conns      atomic.Int32
	keepalives atomic.Int32
	forwards   atomic.Int32
	hangAgent  atomic.Bool // agent commands start but never speak
	mu         sync.Mutex
	execs      []string
	ln         net.Listener
}

func newKey(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, pem.EncodeToMemory(blk)
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	return startServerOn(t, "127.0.0.1:0")
}

func startServerOn(t *testing.T, listen string) *testServer {
	t.Helper()
	hostKey, _ := newKey(t)
	clientKey, clientPEM := newKey(t)
	keyFile := filepath.Join(t.TempDir(), "id_test")
	if err := os.WriteFile(keyFile, clientPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, listen, hostKey, clientKey.PublicKey(), keyFile)
}

func startServerWith(t *testing.T, listen string, hostKey ssh.Signer, allowed ssh.PublicKey, keyFile string) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{Addr: ln.Addr().String(), HostKey: hostKey, ClientKey: keyFile, ln: ln}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) == string(allowed.Marshal()) {
				return nil, nil
			}
			return nil, io.EOF
		},
	}
	cfg.AddHostKey(hostKey)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serveConn(c, cfg)
		}
	}()
	return s
}

func (s *testServer) Execs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.execs...)
}

func (s *testServer) serveConn(c net.Conn, cfg *ssh.ServerConfig) {
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	s.conns.Add(1)
	go func() {
		for r := range reqs {
			if r.Type == "keepalive@openssh.com" {
				s.keepalives.Add(1)
			}
			r.Reply(r.Type == "keepalive@openssh.com", nil)
		}
	}()
	for nc := range chans {
		if nc.ChannelType() == "direct-tcpip" {
			go s.forward(nc)
			continue
		}
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.serveSession(ch, creqs)
	}
}

func (s *testServer) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		switch r.Type {
		case "exec":
			if len(r.Payload) < 4 {
				r.Reply(false, nil)
				continue
			}
			cmdline := string(r.Payload[4:])
			s.mu.Lock()
			s.execs = append(s.execs, cmdline)
			s.mu.Unlock()
			r.Reply(true, nil)
			if s.hangAgent.Load() && strings.HasSuffix(cmdline, " agent") {
				io.Copy(io.Discard, ch) // until the client closes the channel
				return
			}
			cmd := exec.Command("sh", "-c", cmdline)
			cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
			// Like sshd, do not wait for the client's stdin once the
			// command has exited.
			stdin, _ := cmd.StdinPipe()
			go func() { io.Copy(stdin, ch); stdin.Close() }()
			status := 0
			if err := cmd.Run(); err != nil {
				status = 255
				if ee, ok := err.(*exec.ExitError); ok {
					status = ee.ExitCode()
					if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
						status = 128 + int(ws.Signal())
					}
				}
			}
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], uint32(status))
			ch.CloseWrite()
			ch.SendRequest("exit-status", false, b[:])
			return
		case "subsystem":
			if string(r.Payload[4:]) != "sftp" {
				r.Reply(false, nil)
				continue
			}
			r.Reply(true, nil)
			srv, err := sftp.NewServer(ch)
			if err != nil {
				return
			}
			srv.Serve()
			return
		default:
			r.Reply(r.Type == "env", nil)
		}
	}
}

// knownHostsFor writes a known_hosts file trusting key for the server.
func knownHostsFor(t *testing.T, addr string, key ssh.PublicKey) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhostsLine(addr, key)
	if err := os.WriteFile(f, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// forward serves a direct-tcpip channel (what ProxyJump uses).
func (s *testServer) forward(nc ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	c, err := net.Dial("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		c.Close()
		return
	}
	s.forwards.Add(1)
	go ssh.DiscardRequests(reqs)
	go func() { io.Copy(c, ch); c.(*net.TCPConn).CloseWrite() }()
	io.Copy(ch, c)
	ch.Close()
	c.Close()
}

func knownhostsLine(addr string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
}
