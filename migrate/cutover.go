package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/dnscheck"
	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/transfer"
)

// Options are what the steps of a migration need beyond its plan.
type Options struct {
	// OpenHost connects to a host spec (cmd passes its SSH options).
	OpenHost func(ctx context.Context, spec string) (host.Host, error)
	// Key signs DNS updates; nil when the plan switches no DNS.
	Key *dnscheck.Key
	// Dest is the directory on the new host holding NAME/root
	// (default transfer.DefaultDest).
	Dest string
	// HealthPath is requested on the new host for HTTP services (default "/").
	HealthPath string
	// HoldTimeout bounds how long the old address holds connections
	// before forwarding them anyway (default 60s).
	HoldTimeout time.Duration
	// DNSTTL is the TTL of the records cutover puts in (default: the old TTL).
	DNSTTL uint32
	// TLSCert (key and certificate, PEM) terminates TLS on the web
	// service's TLS port during the move instead of passing it through.
	TLSCert []byte
	// Events, if set, receives a line of progress per step.
	Events func(Event)
	// TransferProgress, if set, receives transfer progress.
	TransferProgress func(transfer.Progress)
	Logger           *slog.Logger

	// Drill makes the named step fail after its work is done, to
	// rehearse a rollback (`migrate cutover --drill restart-new`).
	Drill string
}

// Event is the progress of one step.
type Event struct {
	Step   string        `json:"step"`
	State  string        `json:"state"` // "running", "done", "skipped" (done earlier), "failed"
	Detail string        `json:"detail,omitempty"`
	Took   time.Duration `json:"took_ns,omitempty"`
}

func (o *Options) event(step, state, detail string, took time.Duration) {
	if o.Events != nil {
		o.Events(Event{Step: step, State: state, Detail: detail, Took: took})
	}
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// step runs fn as a journalled step, reporting it through Events.
func step[T any](ctx context.Context, m *Migration, o *Options, name string, out *T, fn func(ctx context.Context) (T, error)) error {
	start := time.Now()
	if _, ok := m.Journal.Last(name); !ok || !m.Journal.Done(name, nil) {
		o.event(name, "running", "", 0)
	}
	ran, err := Run(ctx, m.Journal, name, out, func(ctx context.Context) (T, error) {
		res, err := fn(ctx)
		if err == nil && o.Drill == name {
			return res, fmt.Errorf("%s: failed on purpose (--drill %s)", name, name)
		}
		return res, err
	})
	switch {
	case err != nil:
		o.event(name, "failed", err.Error(), time.Since(start))
	case !ran:
		o.event(name, "skipped", "done earlier", 0)
	default:
		o.event(name, "done", "", time.Since(start))
	}
	return err
}

// session holds the open hosts of one command.
type session struct {
	m        *Migration
	o        *Options
	old, new host.Host
}

func openSession(ctx context.Context, m *Migration, o *Options) (*session, error) {
	if o.OpenHost == nil {
		return nil, errors.New("no way to open hosts")
	}
	s := &session{m: m, o: o}
	var err error
	if s.old, err = o.OpenHost(ctx, m.Plan.From); err != nil {
		return nil, fmt.Errorf("old host %s: %w", m.Plan.From, err)
	}
	if s.new, err = o.OpenHost(ctx, m.Plan.To); err != nil {
		s.old.Close()
		return nil, fmt.Errorf("new host %s: %w", m.Plan.To, err)
	}
	return s, nil
}

func (s *session) Close() {
	s.old.Close()
	s.new.Close()
}

// CaptureResult is the data of the capture and final-sync steps.
type CaptureResult struct {
	Archive string             `json:"archive"` // path inside the migration directory
	Summary *capture.RunResult `json:"summary"`
}

// TransferResult is the data of the transfer steps.
type TransferResult struct {
	Archive string         `json:"archive"`
	Stats   transfer.Stats `json:"stats"`
}

// capture fetches an archive of the service from the old host; with
// since, a delta of the stopped service against that full capture.
func (s *session) capture(ctx context.Context, archive string, since *capture.Manifest, baseDigest string) (CaptureResult, error) {
	p := capture.RunParams{Options: capture.Options{Service: s.m.Plan.Service, Port: s.m.Plan.Port,
		Since: since, Stopped: since != nil, BaseDigest: baseDigest}}
	res, err := capture.Fetch(ctx, s.old, p, s.m.Path(archive))
	if err != nil {
		return CaptureResult{}, err
	}
	return CaptureResult{Archive: archive, Summary: res}, nil
}

func (s *session) ship(ctx context.Context, archive string) (TransferResult, error) {
	st, err := transfer.Ship(ctx, s.new, s.m.Path(archive), transfer.Options{Name: s.m.Plan.Name, Dest: s.o.Dest,
		Progress: s.o.TransferProgress, Logger: s.o.logger()})
	if err != nil {
		return TransferResult{}, err
	}
	return TransferResult{Archive: archive, Stats: st}, nil
}

func (s *session) serviceOptions() transfer.ServiceOptions {
	return transfer.ServiceOptions{Name: s.m.Plan.Name, Dest: s.o.Dest}
}

// Capture runs the capture step of the migration (the full capture into
// DIR/archives), unless the journal has it done.
func Capture(ctx context.Context, m *Migration, o Options) (CaptureResult, error) {
	s, err := openSession(ctx, m, &o)
	if err != nil {
		return CaptureResult{}, err
	}
	defer s.Close()
	return s.captureStep(ctx)
}

// Transfer runs the capture and transfer steps (the full capture shipped
// to the new host), unless the journal has them done.
func Transfer(ctx context.Context, m *Migration, o Options) (TransferResult, error) {
	s, err := openSession(ctx, m, &o)
	if err != nil {
		return TransferResult{}, err
	}
	defer s.Close()
	return s.transferStep(ctx)
}

// Prepare runs the steps that can happen while the old service still
// serves: capture, transfer, and starting the service on the new host.
func Prepare(ctx context.Context, m *Migration, o Options) error {
	s, err := openSession(ctx, m, &o)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.prepare(ctx)
}

func (s *session) captureStep(ctx context.Context) (CaptureResult, error) {
	var full CaptureResult
	err := step(ctx, s.m, s.o, StepCapture, &full, func(ctx context.Context) (CaptureResult, error) {
		return s.capture(ctx, filepath.Join(ArchiveDir, "full.tar.zst"), nil, "")
	})
	return full, err
}

func (s *session) transferStep(ctx context.Context) (TransferResult, error) {
	var res TransferResult
	full, err := s.captureStep(ctx)
	if err != nil {
		return res, err
	}
	err = step(ctx, s.m, s.o, StepTransfer, &res, func(ctx context.Context) (TransferResult, error) {
		return s.ship(ctx, full.Archive)
	})
	return res, err
}

func (s *session) prepare(ctx context.Context) error {
	if _, err := s.transferStep(ctx); err != nil {
		return err
	}
	return step(ctx, s.m, s.o, StepStartNew, nil, func(ctx context.Context) (transfer.ServiceStatus, error) {
		st, err := transfer.GetServiceStatus(ctx, s.new, s.serviceOptions())
		if err == nil && st.Status == "running" {
			return st, nil
		}
		return transfer.StartService(ctx, s.new, s.serviceOptions())
	})
}

// CutoverResult sums up a cutover.
type CutoverResult struct {
	Transfer   TransferResult `json:"transfer"`
	FinalSync  TransferResult `json:"final_sync"`
	Proxy      ProxyState     `json:"proxy"`
	HoldTime   time.Duration  `json:"hold_ns"` // from taking the address to releasing it
	DNS        *DNSSwitch     `json:"dns,omitempty"`
	RolledBack bool           `json:"rolled_back"`
	Error      string         `json:"error,omitempty"`
}

// Cutover moves the service: everything Prepare does (if not done yet),
// then preflight, takeover of the old address by the holding proxy, the
// final delta sync, a restart and health check on the new host, release
// of the held connections to it, and the DNS switch. Each step is
// journalled; run again after a crash or Ctrl-C, it continues. If a step
// after the takeover fails, it rolls back: the old service is started
// again on the held socket and DNS is restored.
func Cutover(ctx context.Context, m *Migration, o Options) (*CutoverResult, error) {
	s, err := openSession(ctx, m, &o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	res := &CutoverResult{}
	m.Journal.Done(StepTransfer, &res.Transfer)
	if err := step(ctx, m, &o, StepPreflight, nil, s.preflight); err != nil {
		return nil, err
	}
	if err := s.switchOver(ctx, res); err != nil {
		if errors.Is(err, context.Canceled) {
			// Ctrl-C: leave things as they are; the journal says where
			// to continue.
			return nil, err
		}
		res.Error = err.Error()
		if rerr := s.rollback(context.WithoutCancel(ctx)); rerr != nil {
			return res, fmt.Errorf("%w; rollback failed too: %v", err, rerr)
		}
		res.RolledBack = true
		return res, hint.With(fmt.Errorf("cutover failed and was rolled back: %w", err),
			"the old host serves again; fix the cause and run `migrate cutover "+m.Dir+"` again")
	}
	return res, nil
}

func (s *session) switchOver(ctx context.Context, res *CutoverResult) error {
	m, o := s.m, s.o
	// Have both agents deployed and checked before the old address is
	// held, so that the hold pays for none of it.
	for _, h := range []host.Host{s.old, s.new} {
		if err := h.Call(ctx, agent.MethodPing, nil, nil); err != nil {
			return err
		}
	}
	var took TakeoverResult
	if err := step(ctx, m, o, StepTakeover, &took, s.takeover); err != nil {
		return err
	}
	res.Proxy = took.Proxy
	var base capture.Manifest
	if err := step(ctx, m, o, StepFinalSync, &res.FinalSync, func(ctx context.Context) (TransferResult, error) {
		if s.mode() != "http" {
			// A service that keeps state in its files (a mail queue and
			// mailboxes, a zone journal) must not work on them while the
			// final sync replaces them: a queue file shipped before the
			// mailbox could be delivered by the new Postfix into a
			// mailbox the sync then overwrites. It serves no one yet;
			// it is started again in the next step.
			if _, err := transfer.StopService(ctx, s.new, s.serviceOptions()); err != nil {
				return TransferResult{}, fmt.Errorf("stop the service on the new host before the final sync: %w", err)
			}
		}
		cur, holds, err := s.rootManifest(ctx)
		if err != nil {
			return TransferResult{}, err
		}
		base = *cur
		name := fmt.Sprintf("delta-%s.tar.zst", time.Now().UTC().Format("20060102T150405.000"))
		delta, err := s.capture(ctx, filepath.Join(ArchiveDir, name), cur, holds)
		if err != nil {
			return TransferResult{}, err
		}
		return s.ship(ctx, delta.Archive)
	}); err != nil {
		return err
	}
	if base.Kind == "" {
		// The final sync was done by an earlier run.
		full, err := s.base()
		if err != nil {
			return err
		}
		base = *full
	}
	if err := step(ctx, m, o, StepRestart, nil, func(ctx context.Context) (transfer.ServiceStatus, error) {
		if d, err := capture.OpenArchive(s.m.Path(res.FinalSync.Archive)); err == nil && s.mode() == "http" && dataOnly(&base, d.Manifest()) {
			// Only documents changed: the web server serves them as they are.
			_, err := s.preflightService(ctx)
			return transfer.ServiceStatus{Name: s.m.Plan.Name, Status: "running (not restarted: only data changed)"}, err
		}
		if _, err := transfer.StopService(ctx, s.new, s.serviceOptions()); err != nil {
			return transfer.ServiceStatus{}, err
		}
		st, err := transfer.StartService(ctx, s.new, s.serviceOptions())
		if err != nil {
			return st, err
		}
		_, err = s.preflightService(ctx)
		return st, err
	}); err != nil {
		return err
	}
	if err := step(ctx, m, o, StepRelease, nil, func(ctx context.Context) (string, error) {
		var state string
		err := s.old.Call(ctx, MethodHoldCtl, HoldCtlParams{Socket: took.Proxy.ControlSocket, Request: HoldRequest{Cmd: HoldCmdRelease}}, &state)
		return state, err
	}); err != nil {
		return err
	}
	if e, ok := m.Journal.Last(StepRelease); ok {
		res.HoldTime = e.Time.Sub(took.Proxy.TakenAt)
	}
	if len(m.Plan.Domains) == 0 {
		return nil
	}
	var sw DNSSwitch
	if err := step(ctx, m, o, StepDNS, &sw, s.switchDNS); err != nil {
		return err
	}
	res.DNS = &sw
	return nil
}

// base returns the manifest of the full capture.
func (s *session) base() (*capture.Manifest, error) {
	var full CaptureResult
	if !s.m.Journal.Done(StepCapture, &full) {
		return nil, errors.New("no full capture in the journal")
	}
	r, err := capture.OpenArchive(s.m.Path(full.Archive))
	if err != nil {
		return nil, err
	}
	return r.Manifest(), nil
}

// rootManifest returns what the new host's root holds: the full capture
// with the deltas shipped since applied, and the digest the target
// records for it (that of the last archive it completed).
func (s *session) rootManifest(ctx context.Context) (*capture.Manifest, string, error) {
	full, err := s.base()
	if err != nil {
		return nil, "", err
	}
	fullDigest, err := full.Digest()
	if err != nil {
		return nil, "", err
	}
	st, err := transfer.GetServiceStatus(ctx, s.new, s.serviceOptions())
	if err != nil {
		return nil, "", err
	}
	switch st.Digest {
	case fullDigest:
		return full, fullDigest, nil
	case "":
		return nil, "", hint.With(fmt.Errorf("the root of %s on %s is not complete", s.m.Plan.Name, s.m.Plan.To),
			"run `migrate cutover --prepare-only` to ship it again")
	}
	byDigest := map[string]*capture.Manifest{}
	files, _ := filepath.Glob(s.m.Path(ArchiveDir, "delta-*.tar.zst"))
	for _, f := range files {
		r, err := capture.OpenArchive(f)
		if err != nil {
			continue
		}
		if d, err := r.Manifest().Digest(); err == nil {
			byDigest[d] = r.Manifest()
		}
	}
	var chain []*capture.Manifest
	for d := st.Digest; d != fullDigest; {
		dm := byDigest[d]
		if dm == nil || len(chain) > len(byDigest) {
			return nil, "", hint.With(fmt.Errorf("the root of %s on %s holds manifest %.12s, which no archive of this migration leads to", s.m.Plan.Name, s.m.Plan.To, st.Digest),
				"the root was changed outside this migration; remove it (`migrate service remove`) and run the cutover again")
		}
		chain = append([]*capture.Manifest{dm}, chain...)
		d = dm.Base
	}
	cur := full
	for _, dm := range chain {
		if cur, err = capture.Apply(cur, dm); err != nil {
			return nil, "", err
		}
	}
	return cur, st.Digest, nil
}

// mode says how the service is forwarded: "http" for web servers, "tcp"
// otherwise.
func (s *session) mode() string {
	switch s.m.Plan.Service {
	case "nginx", "apache2", "httpd", "lighttpd":
		return "http"
	}
	return "tcp"
}

func (s *session) port() (int, error) {
	if s.m.Plan.Port != 0 {
		return s.m.Plan.Port, nil
	}
	m, err := s.base()
	if err != nil {
		return 0, err
	}
	for _, p := range m.Ports {
		if p.Proto == "tcp" {
			return p.Port, nil
		}
	}
	return 0, hint.With(errors.New("the service listens on no TCP port"), "give the port with `migrate plan --port N`")
}

// addrOf returns the address of a host spec ("ssh://root@10.0.0.2:22" → "10.0.0.2").
func addrOf(spec string) string {
	if spec == "local" {
		return "127.0.0.1"
	}
	if u, err := url.Parse(spec); err == nil && u.Scheme == "ssh" {
		return u.Hostname()
	}
	h := spec
	if i := strings.LastIndexByte(h, '@'); i >= 0 {
		h = h[i+1:]
	}
	if hh, _, err := net.SplitHostPort(h); err == nil {
		return hh
	}
	return strings.Trim(h, "[]")
}

func (s *session) newAddr() string {
	if s.m.Plan.NewAddr != "" {
		return s.m.Plan.NewAddr
	}
	return addrOf(s.m.Plan.To)
}

func (s *session) oldAddr() string {
	if s.m.Plan.OldAddr != "" {
		return s.m.Plan.OldAddr
	}
	return addrOf(s.m.Plan.From)
}

// preflight checks that the new service answers and that the DNS key is
// accepted, before anything is touched on the old host.
func (s *session) preflight(ctx context.Context) (string, error) {
	detail, err := s.preflightService(ctx)
	if err != nil {
		return "", hint.With(fmt.Errorf("preflight: %w", err), "check the service on the new host with `migrate service status`")
	}
	if len(s.m.Plan.Domains) > 0 {
		if s.o.Key == nil {
			return "", hint.With(errors.New("preflight: the plan switches DNS but no TSIG key was given"), "give --tsig-key FILE or set MIGRATE_TSIG_KEY")
		}
		u := s.updater()
		for _, d := range s.m.Plan.Domains {
			if _, _, err := u.Probe(ctx, d); err != nil {
				return "", fmt.Errorf("preflight: dns key: %w", err)
			}
		}
		detail += "; dns key accepted"
	}
	return detail, nil
}

// preflightService checks the service on the new host from here.
func (s *session) preflightService(ctx context.Context) (string, error) {
	port, err := s.port()
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort(s.newAddr(), strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		detail, err := s.health(ctx, addr)
		if err == nil {
			return detail, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *session) health(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if s.mode() != "http" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return "", fmt.Errorf("new service at %s: %w", addr, err)
		}
		c.Close()
		return "new service accepts connections at " + addr, nil
	}
	path := s.o.HealthPath
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("new service at %s: %w", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return "", fmt.Errorf("new service at %s answered %s", addr, resp.Status)
	}
	return fmt.Sprintf("new service at %s answered %s", addr, resp.Status), nil
}

func (s *session) takeover(ctx context.Context) (TakeoverResult, error) {
	ports, err := s.ports()
	if err != nil {
		return TakeoverResult{}, err
	}
	p := TakeoverParams{Name: s.m.Plan.Name, HoldTimeout: s.o.HoldTimeout}
	for _, port := range ports {
		tp := TakeoverPort{Port: port, Mode: s.portMode(port),
			Listen:  net.JoinHostPort(s.oldAddr(), strconv.Itoa(port)),
			Backend: net.JoinHostPort(s.newAddr(), strconv.Itoa(port))}
		if tp.Mode == ModeHTTPS {
			tp.TLSCert = s.o.TLSCert
		}
		p.Ports = append(p.Ports, tp)
	}
	var res TakeoverResult
	if err := s.old.Call(ctx, MethodTakeover, p, &res); err != nil {
		return res, err
	}
	res.Proxy.Host = s.m.Plan.From
	return res, nil
}

// ports are the TCP ports the service listens on (from its capture), the
// plan's port first: all of them are held, or the old service's stop
// would close the others.
func (s *session) ports() ([]int, error) {
	first, err := s.port()
	if err != nil {
		return nil, err
	}
	out := []int{first}
	base, err := s.base()
	if err != nil {
		return nil, err
	}
	for _, p := range base.Ports {
		if strings.HasPrefix(p.Proto, "tcp") && !slices.Contains(out, p.Port) {
			out = append(out, p.Port)
		}
	}
	return out, nil
}

// portMode says how a port is forwarded: web servers' HTTP ports through
// the HTTP proxy; their TLS ports passed through as they are (the new
// host serves the migrated certificate) unless a certificate to
// terminate with was given; anything else as plain TCP.
func (s *session) portMode(port int) string {
	if s.mode() != ModeHTTP {
		return ModeTCP
	}
	switch port {
	case 443, 8443:
		if len(s.o.TLSCert) > 0 {
			return ModeHTTPS
		}
		return ModeTCP
	}
	return ModeHTTP
}

func (s *session) updater() *dnscheck.Updater {
	u := &dnscheck.Updater{Key: s.o.Key, Auth: s.m.Plan.DNSServers, Logger: s.o.logger()}
	if len(s.m.Plan.DNSServers) > 0 {
		u.Primary = s.m.Plan.DNSServers[0]
	}
	return u
}

func (s *session) switchDNS(ctx context.Context) (DNSSwitch, error) {
	sw := DNSSwitch{Names: s.m.Plan.Domains, NewAddr: s.newAddr(), Servers: s.m.Plan.DNSServers}
	typ := "A"
	if ip := net.ParseIP(sw.NewAddr); ip != nil && ip.To4() == nil {
		typ = "AAAA"
	}
	if err := os.MkdirAll(s.m.Path("dns"), 0o700); err != nil {
		return sw, err
	}
	for _, name := range s.m.Plan.Domains {
		u := s.updater()
		u.RecordPath = s.m.Path("dns", dns.Fqdn(name)+"json")
		ch, err := u.Set(ctx, name, typ, []string{sw.NewAddr}, s.o.DNSTTL)
		if err != nil {
			// Put back what this step already changed.
			for _, done := range sw.Changes {
				if _, rerr := s.updater().Restore(context.WithoutCancel(ctx), done); rerr != nil {
					err = fmt.Errorf("%w; restoring %s failed: %v", err, done.Name, rerr)
				}
			}
			return sw, err
		}
		sw.Changes = append(sw.Changes, ch)
		if ch.CachesExpire.After(sw.CachesExpire) {
			sw.CachesExpire = ch.CachesExpire
		}
	}
	sw.SwitchedAt = time.Now().UTC()
	return sw, nil
}

// dataOnly reports whether a delta against base changes nothing but data
// (documents, zone files, spools) and run-time files such as pid files:
// then the service on the new host needs no restart.
func dataOnly(base, d *capture.Manifest) bool {
	reasons := map[string][]string{}
	for _, e := range base.Entries {
		reasons[e.Path] = e.Reasons
	}
	ok := func(rs []string) bool {
		for _, r := range rs {
			if strings.HasPrefix(r, "data:") || strings.HasPrefix(r, "runtime") {
				return true
			}
		}
		return false
	}
	for _, p := range d.Deleted {
		if !ok(reasons[p]) && !strings.HasPrefix(p, "/run/") {
			return false
		}
	}
	for _, e := range d.Entries {
		if !ok(e.Reasons) && e.Type != capture.TypeDir {
			return false
		}
	}
	return true
}
