package dnscheck

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeServer is an in-process authoritative server over UDP and TCP on
// one loopback port. It answers from a zone text and does not chase
// CNAMEs, so clients must.
type fakeServer struct {
	Addr     string
	mu       sync.Mutex
	records  []dns.RR
	zone     string
	notAA    bool          // answer without the aa flag (lame)
	rcode    int           // answer every query with this rcode when set
	truncate bool          // answers over UDP are empty with TC set
	delay    time.Duration // before every answer
	udp, tcp atomic.Int64  // queries seen
}

const testZone = `$ORIGIN example.test.
$TTL 60
@ IN SOA ns1 hostmaster %SERIAL% 3600 600 86400 60
@ NS ns1
@ NS ns2
@ MX 10 mail
ns1 A 127.0.0.1
ns2 A 127.0.0.2
www A 192.0.2.10
mail A 192.0.2.25
app CNAME www
long 86400 A 192.0.2.11
`

func parseZone(t testing.TB, text string) []dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), "example.test.", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	return rrs
}

// newFake starts a server for zone text (with %SERIAL% replaced).
func newFake(t testing.TB, serial string, extra string, opts ...func(*fakeServer)) *fakeServer {
	t.Helper()
	f := &fakeServer{zone: "example.test.", records: parseZone(t, strings.ReplaceAll(testZone, "%SERIAL%", serial)+extra)}
	for _, o := range opts {
		o(f)
	}
	var udp net.PacketConn
	var tcp net.Listener
	for range 20 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", u.LocalAddr().String())
		if err == nil {
			udp, tcp = u, l
			break
		}
		u.Close()
	}
	if udp == nil {
		t.Fatal("no port free for udp and tcp")
	}
	f.Addr = udp.LocalAddr().String()
	for _, s := range []*dns.Server{{PacketConn: udp, Handler: dns.HandlerFunc(f.serve)}, {Listener: tcp, Handler: dns.HandlerFunc(f.serve)}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return f
}

func (f *fakeServer) serve(w dns.ResponseWriter, r *dns.Msg) {
	isUDP := w.LocalAddr().Network() == "udp"
	if isUDP {
		f.udp.Add(1)
	} else {
		f.tcp.Add(1)
	}
	time.Sleep(f.delay)
	m := new(dns.Msg)
	m.SetReply(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	m.Authoritative = !f.notAA
	if f.rcode != 0 {
		m.Rcode = f.rcode
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	exists := false
	for _, rr := range f.records {
		h := rr.Header()
		if !strings.EqualFold(h.Name, q.Name) {
			continue
		}
		exists = true
		if h.Rrtype == q.Qtype || (h.Rrtype == dns.TypeCNAME && q.Qtype != dns.TypeCNAME) {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	if len(m.Answer) == 0 {
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = append(m.Ns, dns.Copy(f.records[0]))
	}
	if f.truncate && isUDP && len(m.Answer) > 0 {
		m.Answer, m.Truncated = nil, true
	}
	w.WriteMsg(m)
}

// silentServer is a UDP socket that never answers.
func silentServer(t testing.TB) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}
