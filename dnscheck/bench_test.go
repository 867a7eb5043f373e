package dnscheck

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchDelay is added by every fake server to every answer, so one query
// round costs about this long whatever the loopback speed.
const benchDelay = 20 * time.Millisecond

// BenchmarkCheckServers checks one name against N authoritative servers,
// each answering after benchDelay. Queries go to all servers at once, so
// a check costs about one round trip ("rounds" ≈ 1) whatever N is; a
// server-by-server loop would cost N rounds per query.
func BenchmarkCheckServers(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			var servers []string
			for range n {
				servers = append(servers, newFake(b, "7", "", func(f *fakeServer) { f.delay = benchDelay }).Addr)
			}
			q := Query{Names: []string{"www"}, Zone: "example.test", Servers: servers, Timeout: 2 * time.Second}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				rep, err := Check(context.Background(), q)
				if err != nil || !rep.OK {
					b.Fatalf("%v %+v", err, rep)
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			// A check is two dependent steps (SOA, then NS and the records
			// concurrently), so the floor is 2 × benchDelay.
			b.ReportMetric(float64(per)/float64(2*benchDelay), "rounds")
		})
	}
}

// BenchmarkCheckDeadServer: 15 live servers and one that never answers,
// with a 100 ms timeout. The dead server costs one timeout for the whole
// check ("timeouts" ≈ 1), not one per query.
func BenchmarkCheckDeadServer(b *testing.B) {
	const timeout = 100 * time.Millisecond
	var servers []string
	for range 15 {
		servers = append(servers, newFake(b, "7", "", func(f *fakeServer) { f.delay = benchDelay }).Addr)
	}
	servers = append(servers, silentServer(b))
	q := Query{Names: []string{"www"}, Zone: "example.test", Servers: servers, Timeout: timeout}
	start := time.Now()
	for b.Loop() {
		if rep, err := Check(context.Background(), q); err != nil || rep.OK {
			b.Fatalf("%v: the dead server went unnoticed", err)
		}
	}
	b.ReportMetric(float64(time.Since(start)/time.Duration(b.N))/float64(timeout), "timeouts")
}
