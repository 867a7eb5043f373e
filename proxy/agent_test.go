package proxy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/hint"
)

// TestAgentCtl drives a running proxy's control socket through the agent
// protocol, as the orchestrator does on the old host.
func TestAgentCtl(t *testing.T) {
	a := named("a")
	defer a.Close()
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	lp := freePort(t)
	startProxy(t, "Control \""+sock+"\"\n"+simpleCfg(lp, portOf(a.URL)), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := agent.Pipe(ctx, agent.Handlers(), nil)
	defer c.Close()
	var res CtlResult
	if err := c.Call(ctx, MethodCtl, CtlParams{Control: sock, Action: "list"}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Status == nil || len(res.Status.Services) != 1 || !res.Status.Services[0].Backends[0].Alive {
		t.Fatalf("list: %+v", res)
	}
	if err := c.Call(ctx, MethodCtl, CtlParams{Control: sock, Action: "disable", Backend: hostPort(a.URL)}, &res); err != nil || res.Changed != 1 {
		t.Fatalf("disable: %+v %v", res, err)
	}
	err := c.Call(ctx, MethodCtl, CtlParams{Control: sock, Action: "disable", Backend: "nope:1"}, &res)
	if err == nil || !strings.Contains(err.Error(), "no such backend") || hint.Of(err) == "" {
		t.Fatalf("unknown backend: %v (hint %q)", err, hint.Of(err))
	}
}
