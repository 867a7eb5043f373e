package migrate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/host"
)

// More --then actions of drain, run in this order after stop-proxy.
const (
	// ThenRemoveAgent removes the agent binaries and the cutover state
	// from the old host.
	ThenRemoveAgent = "remove-agent"
	// ThenTakeAddress moves the old host's address to the new host as an
	// alias, so that clients which hard-coded the IP keep working: the
	// old host gives it up, the new one brings it up and announces it
	// (gratuitous ARP).
	ThenTakeAddress = "take-address"
)

// Agent methods of the --then actions.
const (
	MethodReleaseAddress = "drain.release-address"
	MethodAddAddress     = "drain.add-address"
	MethodRemoveAgent    = "drain.remove-agent"
)

// AddressParams name an address and, for drain.add-address, the address
// whose interface receives it.
type AddressParams struct {
	Addr   string        `json:"addr"`
	Prefix int           `json:"prefix,omitempty"`
	Near   string        `json:"near,omitempty"`
	Delay  time.Duration `json:"delay,omitempty"`
}

// AddressResult says where the address was.
type AddressResult struct {
	Iface  string `json:"iface"`
	Prefix int    `json:"prefix"`
	Detail string `json:"detail,omitempty"`
}

// RemoveAgentParams name the migration whose state goes too.
type RemoveAgentParams struct {
	Name string `json:"name"`
}

func init() {
	agent.Register(MethodReleaseAddress, agent.Typed(func(_ context.Context, p AddressParams) (*AddressResult, error) {
		return releaseAddress(p)
	}))
	agent.Register(MethodAddAddress, agent.Typed(addAddress))
	agent.Register(MethodRemoveAgent, agent.Typed(func(_ context.Context, p RemoveAgentParams) (string, error) {
		return removeAgent(p)
	}))
}

// ifaceOf finds the interface holding addr and the address's prefix length.
func ifaceOf(addr string) (string, int, error) {
	ip := net.ParseIP(addr)
	if ip == nil {
		return "", 0, fmt.Errorf("%q is not an IP address", addr)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", 0, err
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				ones, _ := n.Mask.Size()
				return ifc.Name, ones, nil
			}
		}
	}
	return "", 0, fmt.Errorf("no interface holds %s", addr)
}

// releaseAddress removes the address from this host after p.Delay, in a
// process of its own: the caller may be connected through that address,
// and gets its answer first.
func releaseAddress(p AddressParams) (*AddressResult, error) {
	iface, prefix, err := ifaceOf(p.Addr)
	if err != nil {
		return nil, err
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, errors.New("release address: the ip command (iproute2) is missing")
	}
	secs := strconv.FormatFloat(max(p.Delay, 0).Seconds(), 'f', 3, 64)
	cmd := exec.Command("sh", "-c", `sleep "$1" && exec "$2" addr del "$3" dev "$4"`, "release",
		secs, ip, p.Addr+"/"+strconv.Itoa(prefix), iface)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("release address: %w", err)
	}
	go cmd.Wait()
	return &AddressResult{Iface: iface, Prefix: prefix, Detail: "released in " + secs + "s"}, nil
}

// addAddress brings addr up on the interface that holds p.Near and
// announces it with gratuitous ARP (arping), so that neighbours stop
// sending its traffic to the old host at once.
func addAddress(ctx context.Context, p AddressParams) (*AddressResult, error) {
	iface, _, err := ifaceOf(p.Near)
	if err != nil {
		return nil, err
	}
	r := &AddressResult{Iface: iface, Prefix: p.Prefix}
	if _, _, err := ifaceOf(p.Addr); err == nil {
		r.Detail = "already up"
		return r, nil
	}
	out, err := exec.CommandContext(ctx, "ip", "addr", "add", p.Addr+"/"+strconv.Itoa(p.Prefix), "dev", iface).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip addr add %s dev %s: %v: %s", p.Addr, iface, err, strings.TrimSpace(string(out)))
	}
	if arping, err := exec.LookPath("arping"); err == nil {
		out, err := exec.CommandContext(ctx, arping, "-U", "-c", "2", "-w", "3", "-I", iface, p.Addr).CombinedOutput()
		if err != nil {
			r.Detail = fmt.Sprintf("up; gratuitous ARP failed: %v: %s", err, strings.TrimSpace(string(out)))
		} else {
			r.Detail = "up, announced by gratuitous ARP"
		}
	} else {
		r.Detail = "up; arping not installed: neighbours learn the new MAC when their ARP entries expire"
	}
	return r, nil
}

// removeAgent removes the cutover state of the migration and every agent
// binary from this host (the running one keeps running until it exits).
func removeAgent(p RemoveAgentParams) (string, error) {
	var removed []string
	if p.Name != "" && !strings.ContainsAny(p.Name, "/.") {
		d := filepath.Join(StateDir, p.Name)
		if err := os.RemoveAll(d); err != nil {
			return "", err
		}
		removed = append(removed, d)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	// exe is <agent dir>/<sha256>/migrate: remove the agent dir, and only
	// when it looks like one.
	dir := filepath.Dir(filepath.Dir(exe))
	if filepath.Base(dir) != "agent" {
		return "", fmt.Errorf("remove agent: %s is not an agent directory", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	removed = append(removed, dir)
	return "removed " + strings.Join(removed, ", "), nil
}

// thenAfterStop runs remove-agent and take-address (in that order, after
// stop-proxy). The old host's address is released last, with a delay,
// since this connection to it may use it.
func thenAfterStop(ctx context.Context, old host.Host, m *Migration, want map[string]bool, o DrainOptions) []ThenResult {
	var out []ThenResult
	oldAddr, newAddr := m.Plan.OldAddr, m.Plan.NewAddr
	if oldAddr == "" {
		oldAddr = addrOf(m.Plan.From)
	}
	if newAddr == "" {
		newAddr = addrOf(m.Plan.To)
	}
	const delay = 2 * time.Second
	var rel AddressResult
	var relErr error
	if want[ThenTakeAddress] {
		relErr = old.Call(ctx, MethodReleaseAddress, AddressParams{Addr: oldAddr, Delay: delay}, &rel)
	}
	released := time.Now()
	if want[ThenRemoveAgent] {
		r := ThenResult{Action: ThenRemoveAgent}
		var detail string
		if err := old.Call(ctx, MethodRemoveAgent, RemoveAgentParams{Name: m.Plan.Name}, &detail); err != nil {
			r.Detail = err.Error()
		} else {
			r.OK, r.Detail = true, detail
		}
		out = append(out, r)
	}
	if !want[ThenTakeAddress] {
		return out
	}
	r := ThenResult{Action: ThenTakeAddress}
	if relErr != nil {
		r.Detail = "release on the old host: " + relErr.Error()
		return append(out, r)
	}
	// The old host is given up: wait until it let go of the address.
	select {
	case <-ctx.Done():
		r.Detail = ctx.Err().Error()
		return append(out, r)
	case <-time.After(time.Until(released.Add(delay + 500*time.Millisecond))):
	}
	newHost, err := o.Open(ctx, m.Plan.To)
	if err != nil {
		r.Detail = "new host: " + err.Error()
		return append(out, r)
	}
	defer newHost.Close()
	var add AddressResult
	if err := newHost.Call(ctx, MethodAddAddress, AddressParams{Addr: oldAddr, Prefix: rel.Prefix, Near: newAddr}, &add); err != nil {
		r.Detail = "add on the new host: " + err.Error()
		return append(out, r)
	}
	r.OK = true
	r.Detail = fmt.Sprintf("%s/%d moved from %s of the old host to %s of the new host: %s", oldAddr, rel.Prefix, rel.Iface, add.Iface, add.Detail)
	return append(out, r)
}

// runThen runs the --then actions in their fixed order: stop-proxy (also
// when only take-address asks for it: the address cannot move while the
// proxy holds it), remove-agent, take-address.
func runThen(ctx context.Context, old host.Host, m *Migration, ps ProxyState, o DrainOptions) []ThenResult {
	want := map[string]bool{}
	var out []ThenResult
	for _, t := range o.Then {
		switch t {
		case ThenStopProxy, ThenRemoveAgent, ThenTakeAddress:
			want[t] = true
		default:
			out = append(out, ThenResult{Action: t, Detail: "unknown action"})
		}
	}
	if want[ThenStopProxy] || want[ThenTakeAddress] {
		r := StopProxy(ctx, old, ps, 10*time.Second)
		out = append(out, r)
		if !r.OK {
			return out
		}
	}
	return append(out, thenAfterStop(ctx, old, m, want, o)...)
}
