package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/dnscheck"
	"github.com/migrate-tool/migrate/internal/facts"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/transfer"
)

// PlanOptions say what to plan.
type PlanOptions struct {
	Name        string
	From, To    string // host specs
	Service     string
	Port        int
	Domains     []string
	DNSServers  []string
	TSIGKeyFile string
	AccessLog   string // on the old host; default from the service
	LogFormat   string
	Bandwidth   int64 // bytes/s assumed for the estimates (default DefaultBandwidth)
	// SMTPPort is the port the MX relay probes of a mail service connect
	// to (default SMTPPort).
	SMTPPort int

	// Open connects to a host (cmd's Factory.OpenHost).
	Open func(ctx context.Context, spec string) (host.Host, error)
	// Progress, when set, is told each phase as it starts.
	Progress func(phase string)
	Logger   *slog.Logger
	Now      func() time.Time
}

// MakePlan reads both hosts, the DNS and the old host's access log and
// returns the plan. Only unreachable hosts and bad options are errors;
// what could not be measured is said in the plan's notes and sections.
func MakePlan(ctx context.Context, o PlanOptions) (*Plan, error) {
	o.defaults()
	if o.TSIGKeyFile != "" {
		if _, err := dnscheck.LoadKey(o.TSIGKeyFile); err != nil {
			return nil, err
		}
	}
	now := o.Now().UTC()
	p := &Plan{Version: PlanVersion, Name: o.Name, Created: now, From: o.From, To: o.To, Service: o.Service, Port: o.Port,
		Domains: o.Domains, DNSServers: o.DNSServers, TSIGKeyFile: o.TSIGKeyFile, AccessLog: o.AccessLog}
	p.Hosts.Old.Spec, p.Hosts.New.Spec = o.From, o.To
	p.OldAddr, p.NewAddr = specAddr(o.From), specAddr(o.To)
	if p.NewAddr == "" {
		// The DNS switch needs the new host's address, not its name.
		p.NewAddr = resolveSpec(ctx, o.To)
	}

	o.Progress("connecting to " + o.From + " and " + o.To)
	oldH, newH, err := openBoth(ctx, o)
	if err != nil {
		return nil, err
	}
	defer oldH.Close()
	defer newH.Close()

	var wg sync.WaitGroup
	var old oldReading
	var newFacts *facts.Facts
	var newErr error
	wg.Go(func() { old = readOld(ctx, oldH, o, p, now) })
	wg.Go(func() { newFacts, newErr = hostFacts(ctx, newH) })
	if len(o.Domains) > 0 {
		wg.Go(func() {
			o.Progress("checking DNS for " + strings.Join(o.Domains, ", "))
			p.DNS = planDNS(ctx, o.Domains, o.DNSServers, now, o.Logger)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if old.err != nil {
		return nil, fmt.Errorf("facts of %s: %w", o.From, old.err)
	}
	if newErr != nil {
		return nil, fmt.Errorf("facts of %s: %w", o.To, newErr)
	}
	p.Hosts.Old = summarizeHost(o.From, old.facts, "/")
	p.Hosts.New = summarizeHost(o.To, newFacts, transfer.DefaultDest)
	p.Hosts.Old.Listening = listening(old.facts, p.Move, o.Port)
	p.Hosts.New.Listening = listening(newFacts, p.Move, o.Port)
	finishPlan(ctx, p, o, newH, old.manifest)
	return p, nil
}

func (o *PlanOptions) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	if o.SMTPPort == 0 {
		o.SMTPPort = SMTPPort
	}
}

// oldReading is what was read on the old host.
type oldReading struct {
	facts    *facts.Facts
	manifest *capture.Manifest
	err      error
}

// readOld reads the old host: facts, the capture dry run, the service's
// configuration and its access log. It fills p.Move, p.Service (when
// named by port), p.Config, p.AccessLog and p.Traffic.
func readOld(ctx context.Context, h host.Host, o PlanOptions, p *Plan, now time.Time) oldReading {
	var r oldReading
	if r.facts, r.err = hostFacts(ctx, h); r.err != nil {
		return r
	}
	o.Progress("capture dry run of " + describeService(o) + " on " + o.From)
	p.Move, r.manifest = moveDryRun(ctx, h, o, now)
	if p.Service == "" {
		// Named by --port: the dry run found which service it is.
		p.Service = fmt.Sprintf("port-%d", o.Port)
		if p.Move.Service != "" {
			p.Service = p.Move.Service
		}
	}
	o.Progress("reading the service's configuration on " + o.From)
	p.Config = inspect(ctx, h, p.Service)
	switch {
	case o.AccessLog != "":
	case p.Config != nil && len(p.Config.AccessLogs) > 0:
		p.AccessLog = p.Config.AccessLogs[0]
	default:
		p.AccessLog = DefaultAccessLog(p.Service)
	}
	if p.AccessLog == "" {
		p.Notes = append(p.Notes, "no access log known for service "+p.Service+": traffic by hour not measured (give --access-log)")
		return r
	}
	o.Progress("reading the access log " + p.AccessLog + " on " + o.From)
	p.Traffic = logHist(ctx, h, p.AccessLog, o.LogFormat)
	return r
}

// finishPlan asks the target what it already holds, probes the MXs of a
// mail service, and applies the risk rules.
func finishPlan(ctx context.Context, p *Plan, o PlanOptions, newH host.Host, manifest *capture.Manifest) {
	if manifest != nil {
		o.Progress("checking what " + o.To + " already holds")
		var hr HaveResult
		if err := newH.Call(ctx, MethodHave, HaveParams{Files: haveList(manifest)}, &hr); err != nil {
			p.Move.Note = "what the target already holds is unknown: " + err.Error()
		} else {
			p.Move.TargetKnown, p.Move.PresentBytes, p.Move.PresentFiles = true, hr.Bytes, hr.Files
		}
		p.Move.estimate()
	}
	if p.DNS != nil && p.DNS.Error == "" && ServiceKind(p.Service) == "postfix" {
		o.Progress("asking each MX whether it accepts mail for the domain (RCPT TO, no message sent)")
		p.DNS.MXProbes = probeMXs(ctx, p.DNS, o.DNSServers, o.SMTPPort, 5*time.Second)
	}
	if p.DNS != nil && p.OldAddr == "" {
		p.OldAddr = dnsAddr(p.DNS)
	}
	p.Risks = Risks(p)
	p.SuggestedCutover = suggestCutover(p, o.Now())
}

// suggestCutover is the first quietest hour once the lowered TTLs are in
// effect everywhere.
func suggestCutover(p *Plan, now time.Time) time.Time {
	if p.Traffic == nil || p.Traffic.QuietHour < 0 {
		return time.Time{}
	}
	from := now
	if p.DNS != nil && p.DNS.Error == "" && p.DNS.CutoverAfter.After(from) {
		from = p.DNS.CutoverAfter
	}
	return NextHour(from, p.Traffic.QuietHour, p.Traffic.Zone)
}

func openBoth(ctx context.Context, o PlanOptions) (oldH, newH host.Host, err error) {
	var errOld, errNew error
	var wg sync.WaitGroup
	wg.Go(func() { oldH, errOld = o.Open(ctx, o.From) })
	wg.Go(func() { newH, errNew = o.Open(ctx, o.To) })
	wg.Wait()
	if errOld != nil || errNew != nil {
		// A failed Open may return a typed nil: close only what opened.
		if errOld == nil {
			oldH.Close()
		}
		if errNew == nil {
			newH.Close()
		}
		if errOld != nil {
			return nil, nil, errOld
		}
		return nil, nil, errNew
	}
	return oldH, newH, nil
}

func hostFacts(ctx context.Context, h host.Host) (*facts.Facts, error) {
	var f facts.Facts
	if err := h.Call(ctx, facts.Method, nil, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

func inspect(ctx context.Context, h host.Host, service string) *ConfigScan {
	var cs ConfigScan
	if err := h.Call(ctx, MethodInspect, InspectParams{Service: service}, &cs); err != nil {
		return &ConfigScan{Service: service, Note: "configuration not inspected: " + err.Error()}
	}
	return &cs
}

func logHist(ctx context.Context, h host.Host, path, format string) *HourTraffic {
	var ht HourTraffic
	if err := h.Call(ctx, MethodLogHist, LogHistParams{Path: path, Format: format, Rotated: true}, &ht); err != nil {
		note := err.Error()
		if hn := hint.Of(err); hn != "" {
			note += " (" + hn + ")"
		}
		return &HourTraffic{Path: path, QuietHour: -1, PeakHour: -1, Note: note}
	}
	return &ht
}

func moveDryRun(ctx context.Context, h host.Host, o PlanOptions, now time.Time) (*MoveSection, *capture.Manifest) {
	start := time.Now()
	res, err := capture.Fetch(ctx, h, capture.RunParams{Options: capture.Options{Service: o.Service, Port: o.Port, Trace: capture.TraceOff}, DryRun: true}, "")
	if err != nil {
		note := "not yet measured: the capture dry run failed: " + err.Error()
		if hn := hint.Of(err); hn != "" {
			note += " (" + hn + ")"
		}
		return &MoveSection{Note: note}, nil
	}
	if res.Manifest == nil {
		return &MoveSection{Note: "not yet measured: the capture dry run returned no manifest"}, nil
	}
	ms := summarizeMove(res.Manifest, now, o.Bandwidth)
	ms.Took = time.Since(start)
	return ms, res.Manifest
}

func summarizeHost(spec string, f *facts.Facts, dest string) HostSummary {
	hs := HostSummary{Spec: spec, Hostname: f.Hostname, OS: f.OS.PrettyName, OSID: f.OS.ID, Arch: f.Arch,
		Kernel: f.Kernel, CPUs: f.CPUs, MemTotal: f.MemTotal}
	best := -1
	for _, m := range f.Mounts {
		if (dest == m.Path || strings.HasPrefix(dest, strings.TrimSuffix(m.Path, "/")+"/")) && len(m.Path) > best {
			best = len(m.Path)
			hs.DiskPath, hs.DiskAvail = m.Path, m.Avail
		}
	}
	return hs
}

// listening lists the old host's sockets of the service: those on the
// captured ports, or on --port.
func listening(f *facts.Facts, ms *MoveSection, port int) []string {
	want := map[int]bool{}
	if port != 0 {
		want[port] = true
	}
	if ms != nil {
		for _, p := range ms.Ports {
			if i := strings.LastIndex(p, ":"); i >= 0 {
				var n int
				fmt.Sscanf(p[i+1:], "%d", &n)
				want[n] = true
			}
		}
	}
	var out []string
	for _, s := range f.Sockets {
		if want[s.Port] {
			out = append(out, fmt.Sprintf("%s %s:%d %s", s.Proto, s.Address, s.Port, s.Process))
		}
	}
	return out
}

func describeService(o PlanOptions) string {
	if o.Service != "" {
		return o.Service
	}
	return fmt.Sprintf("the service on port %d", o.Port)
}

// specAddr is the address in a host spec, when it is an IP address.
func specAddr(spec string) string {
	h := hostOnly(spec)
	if _, err := netip.ParseAddr(h); err == nil {
		return h
	}
	return ""
}

// resolveSpec resolves the host name of a spec with the system resolver:
// its first IPv4 address, else its first address ("" for local or when
// the name does not resolve).
func resolveSpec(ctx context.Context, spec string) string {
	h := hostOnly(spec)
	if spec == "local" || h == "" {
		return ""
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, h)
	if err != nil || len(addrs) == 0 {
		return ""
	}
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
			return a
		}
	}
	return addrs[0]
}

// dnsAddr is the first A record of the first domain.
func dnsAddr(ds *DNSSection) string {
	for _, r := range ds.Records {
		if r.Type == "A" || r.Type == "AAAA" {
			return r.Value
		}
	}
	return ""
}
