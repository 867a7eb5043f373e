package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Module is the module path whose root Binary builds from.
const Module = "github.com/migrate-tool/migrate"

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of a static migrate binary (CGO_ENABLED=0) built
// from ./cmd/migrate of the module the test runs in, once per test process.
// A build failure fails the test.
func Binary(t TB) string {
	t.Helper()
	binOnce.Do(func() { binPath, binErr = build() })
	if binErr != nil {
		t.Fatalf("testbed: build migrate: %v", binErr)
	}
	return binPath
}

// ModuleRoot finds the directory of the migrate module's go.mod, searching
// up from the working directory (a test runs in its package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+Module+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", Module)
		}
		dir = parent
	}
}

const binDirPrefix = "migrate-testbin-"

func build() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	removeStaleBinDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "migrate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "./cmd/migrate")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/migrate: %w\n%s", err, b)
	}
	return out, nil
}

// removeStaleBinDirs deletes binaries built by test processes that are gone
// (a test process cannot remove its own at exit).
func removeStaleBinDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), binDirPrefix)
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(m)
		}
	}
}

// MigrateTimeout bounds one Migrate call.
var MigrateTimeout = 3 * time.Minute

// MigrateCmd returns a command running the migrate binary from the root
// namespace with the bed's --known-hosts and -i flags before args. Its
// environment has HOME set to an empty directory of the bed (so the
// runner's ~/.ssh is not used) and no SSH_AUTH_SOCK.
func (b *Bed) MigrateCmd(ctx context.Context, t TB, args ...string) *exec.Cmd {
	t.Helper()
	full := append([]string{"--known-hosts", b.KnownHosts, "-i", b.ClientKey}, args...)
	cmd := exec.CommandContext(ctx, Binary(t), full...)
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "HOME="+filepath.Join(b.Dir, "home"))
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Migrate runs migrate (see MigrateCmd) and returns its stdout, stderr and
// exit code. Not being able to run it at all fails the test.
func (b *Bed) Migrate(t TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), MigrateTimeout)
	defer cancel()
	cmd := b.MigrateCmd(ctx, t, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		code = ee.ExitCode()
	default:
		t.Fatalf("testbed: run migrate %s: %v\nstderr: %s", strings.Join(args, " "), err, errb.String())
	}
	t.Logf("migrate %s: exit %d in %v", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond))
	return out.String(), errb.String(), code
}
