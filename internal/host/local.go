package host

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"syscall"

	"github.com/migrate-tool/migrate/internal/agent"
)

// localHost is this machine: agent calls run in process over pipes with
// the same framing as over SSH, and Exec uses os/exec.
type localHost struct {
	log *slog.Logger
}

func newLocal(opts Options) *localHost { return &localHost{log: opts.logger().With("host", "local")} }

func (l *localHost) String() string { return "local" }
func (l *localHost) IsLocal() bool  { return true }
func (l *localHost) Close() error   { return nil }

func (l *localHost) Call(ctx context.Context, method string, params, result any) error {
	return l.CallStream(ctx, method, params, nil, nil, result)
}

func (l *localHost) CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error {
	c := agent.Pipe(ctx, agent.Handlers(), l.log)
	defer c.Close()
	return c.CallStream(ctx, method, params, in, out, result)
}

func (l *localHost) Exec(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(argv) == 0 {
		return errors.New("exec: empty command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		e := &ExitError{Argv: argv, Status: ee.ExitCode()}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Status, e.Signal = -1, ws.Signal().String()
		}
		return e
	}
	return err
}
