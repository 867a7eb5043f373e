package transfer

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/hint"
)

// unitDir is where --systemd writes units.
var unitDir = "/etc/systemd/system"

func unitName(l Layout) string { return "migrate-" + l.Name + ".service" }

// systemdDir exists when systemd is the init (sd_booted(3)'s test).
var systemdDir = "/run/systemd/system"

func systemdRunning() bool {
	fi, err := os.Stat(systemdDir)
	return err == nil && fi.IsDir()
}

// unitText is the systemd unit running the root's service with
// RootDirectory= and the same namespaces the supervisor uses.
func unitText(l Layout, m *capture.Manifest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[Unit]\nDescription=%s migrated from %s by migrate\n\n[Service]\n", l.Name, m.Host)
	fmt.Fprintf(&b, "RootDirectory=%s\nMountAPIVFS=yes\nPrivateDevices=yes\nPrivateIPC=yes\nProtectHostname=yes\n", l.Root())
	fmt.Fprintf(&b, "ExecStart=%s\n", quoteArgv(m.Start))
	if len(m.Stop) > 0 {
		fmt.Fprintf(&b, "ExecStop=%s\n", quoteArgv(m.Stop))
	}
	b.WriteString("KillMode=mixed\nTimeoutStopSec=10\nRestart=no\n\n[Install]\nWantedBy=multi-user.target\n")
	return b.String()
}

func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = strconv.Quote(a)
	}
	return strings.Join(q, " ")
}

func startSystemd(ctx context.Context, l Layout, m *capture.Manifest) (*ServiceStatus, error) {
	if !systemdRunning() {
		return nil, hint.With(fmt.Errorf("--systemd: %w", errNoSystemd), "start it without --systemd: migrate supervises it itself")
	}
	unit := unitName(l)
	if err := os.WriteFile(unitDir+"/"+unit, []byte(unitText(l, m)), 0o644); err != nil {
		return nil, fmt.Errorf("write unit %s: %w", unit, err)
	}
	for _, argv := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "start", unit}} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return &ServiceStatus{Name: l.Name, Root: l.Root(), Status: "running", Complete: true, Unit: unit, Ports: m.Ports}, nil
}

// stopUnit stops the service's unit if there is one; it reports whether
// it did.
func stopUnit(ctx context.Context, l Layout) bool {
	if !systemdRunning() {
		return false
	}
	if _, err := os.Stat(unitDir + "/" + unitName(l)); err != nil {
		return false
	}
	return exec.CommandContext(ctx, "systemctl", "stop", unitName(l)).Run() == nil
}

func removeUnit(ctx context.Context, l Layout) {
	p := unitDir + "/" + unitName(l)
	if _, err := os.Stat(p); err != nil {
		return
	}
	os.Remove(p)
	if systemdRunning() {
		_ = exec.CommandContext(ctx, "systemctl", "daemon-reload").Run()
	}
}
