package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/accesslog"
	"github.com/migrate-tool/migrate/internal/tail"
	"github.com/migrate-tool/migrate/internal/traffic"
)

const benchLines = 10000

func sampleLines(b *testing.B, f accesslog.Format) ([][]byte, int64) {
	b.Helper()
	var buf bytes.Buffer
	if err := writeLog(&buf, f, benchLines, time.Date(2026, 11, 21, 10, 0, 0, 0, time.Local)); err != nil {
		b.Fatal(err)
	}
	n := int64(buf.Len())
	return bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n")), n
}

// BenchmarkParse parses each format (detected): "drain" with SkipPath (what
// migrate's drain.follow uses), "all" with every field, "minimal" with
// SkipPath and SkipAgent.
func BenchmarkParse(b *testing.B) {
	for _, f := range formats {
		for _, mode := range []string{"drain", "all", "minimal"} {
			opts := accesslog.Options{SkipPath: mode != "all", SkipAgent: mode == "minimal"}
			b.Run(string(f)+"/"+mode, func(b *testing.B) {
				lines, size := sampleLines(b, f)
				p, _ := accesslog.NewParser("", opts)
				var r accesslog.Record
				b.SetBytes(size / int64(len(lines)))
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					if err := p.Parse(lines[i%len(lines)], &r); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
				// CPU time per line: steadier than wall time on a busy machine.
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/line")
			})
		}
	}
}

// BenchmarkWindowAdd is the per-request cost of traffic counting.
func BenchmarkWindowAdd(b *testing.B) {
	w := traffic.NewWindow(time.Now(), time.Hour)
	clients := []string{"198.51.100.1", "198.51.100.2", "2001:db8::1", "203.0.113.9"}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		w.Add(now.Add(time.Duration(i/1000)*time.Second), clients[i%len(clients)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkTailParse follows a pre-written combined log from its start.
func BenchmarkTailParse(b *testing.B) {
	for _, f := range []accesslog.Format{accesslog.Combined, accesslog.Pound2, accesslog.HAProxy} {
		b.Run(string(f), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "access.log")
			fh, _ := os.Create(path)
			if err := writeLog(fh, f, b.N, time.Now()); err != nil {
				b.Fatal(err)
			}
			fh.Close()
			p, _ := accesslog.NewParser("", accesslog.Options{SkipPath: true})
			var r accesslog.Record
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			tail.New(path, tail.Options{FromStart: true}).Run(ctx, func(lines [][]byte) error {
				for _, l := range lines {
					if p.Parse(l, &r) != nil {
						b.Fatal("bad line")
					}
				}
				if n += len(lines); n >= b.N {
					cancel()
				}
				return nil
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
