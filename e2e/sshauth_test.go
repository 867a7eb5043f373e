//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// TestSSHConfigAlias: `migrate -F FILE facts old` resolves the alias
// through ssh_config (HostName, User, Port, IdentityFile,
// UserKnownHostsFile) with no -i or --known-hosts on the command line.
func TestSSHConfigAlias(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t, testbed.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testbed.Binary(t), "-F", bed.SSHConfig, "--json", "facts", "old")
	cmd.Env = cleanEnv(filepath.Join(t.TempDir(), "home"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("migrate -F ssh_config facts old: %v\n%s", err, stderr.String())
	}
	if _, ok := parseFacts(t, string(out))[bed.Old.Hostname]; !ok {
		t.Errorf("alias old did not reach %s:\n%s", bed.Old.Hostname, out)
	}
}

// TestSSHAgentAuth: with no key file given, migrate authenticates through
// the ssh-agent at SSH_AUTH_SOCK.
func TestSSHAgentAuth(t *testing.T) {
	t.Parallel()
	testbed.RequireTools(t, "ssh-agent", "ssh-add")
	bed := testbed.New(t, testbed.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.CommandContext(ctx, "ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	testbed.WaitFor(t, "ssh-agent socket", 10*time.Second, func() error {
		_, err := os.Stat(sock)
		return err
	})
	home := filepath.Join(t.TempDir(), "home")
	env := append(cleanEnv(home), "SSH_AUTH_SOCK="+sock)
	add := exec.CommandContext(ctx, "ssh-add", bed.ClientKey)
	add.Env = env
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}

	cmd := exec.CommandContext(ctx, testbed.Binary(t), "--known-hosts", bed.KnownHosts, "--json", "facts", bed.New.SSHSpec())
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("facts through ssh-agent: %v\n%s", err, stderr.String())
	}
	if _, ok := parseFacts(t, string(out))[bed.New.Hostname]; !ok {
		t.Errorf("no facts from %s:\n%s", bed.New.Hostname, out)
	}
	// sshd saw the agent's key (the only one offered).
	fp := strings.Fields(mustRun(t, "ssh-keygen", "-lf", bed.ClientKey+".pub"))[1]
	if !strings.Contains(bed.New.SSHD().Log(), "Accepted publickey for root from "+bed.RootAddr) ||
		!strings.Contains(bed.New.SSHD().Log(), fp) {
		t.Errorf("sshd log does not show the agent key %s accepted:\n%s", fp, bed.New.SSHD().Log())
	}

	// Without the agent and without a key, authentication fails cleanly.
	cmd = exec.CommandContext(ctx, testbed.Binary(t), "--known-hosts", bed.KnownHosts, "facts", bed.New.SSHSpec())
	cmd.Env = cleanEnv(home)
	var stderr2 strings.Builder
	cmd.Stderr = &stderr2
	if err := cmd.Run(); err == nil {
		t.Error("facts without any key succeeded")
	} else if lines := nonHintLines(stderr2.String()); len(lines) != 1 || !strings.HasPrefix(lines[0], "migrate: error: ") {
		t.Errorf("want one error line, got:\n%s", stderr2.String())
	}
}

// cleanEnv is the environment without the runner's HOME and agent.
func cleanEnv(home string) []string {
	os.MkdirAll(home, 0o700)
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

func mustRun(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	return string(out)
}

func nonHintLines(stderr string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(strings.TrimSpace(stderr)))
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "migrate: hint:") {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}
