//go:build e2e

package migrate_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/loadgen"
	"github.com/migrate-tool/migrate/internal/testbed"
	"github.com/migrate-tool/migrate/migrate"
)

// BenchmarkCutoverHold moves nginx with a 100 MB docroot under 300
// requests/s and reports how long clients were held: the hold time (the
// old address held → released) and the slowest request of the load. Run
// it with bench/cutover/run.sh (-benchtime=Nx: one fresh test bed per run).
func BenchmarkCutoverHold(b *testing.B) {
	var holds, maxes []time.Duration
	var failed int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bed := testbed.New(b, testbed.Options{PrivateDirs: []string{"/var/www"}})
		var urls []string
		chunk := make([]byte, 1<<20)
		for j := 0; j < 100; j++ {
			rand.Read(chunk)
			name := fmt.Sprintf("blob%03d.bin", j)
			bed.Old.WriteFile(b, "/var/www/html/"+name, chunk, 0o644)
			if j < 5 {
				urls = append(urls, "http://"+bed.Old.Addr+"/"+name)
			}
		}
		bed.Old.WriteFile(b, "/var/www/html/index.html", []byte("hello\n"), 0o644)
		urls = append(urls, "http://"+bed.Old.Addr+"/index.html")
		bed.Old.StartNginx(b, testbed.NginxOptions{System: true})
		dir := b.TempDir() + "/web"
		m, err := migrate.Create(dir, &migrate.Plan{Version: migrate.PlanVersion, Name: "web", From: bed.Old.SSHSpec(), To: bed.New.SSHSpec(), Service: "nginx", Port: 80})
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
		if out, errOut, code := bed.Migrate(b, "cutover", dir, "--prepare-only"); code != 0 {
			b.Fatalf("prepare: %s %s", out, errOut)
		}
		load := loadgen.Start(context.Background(), loadgen.Options{URLs: urls, Rate: 300, MaxDuration: 2 * time.Minute})
		time.Sleep(time.Second)
		b.StartTimer()
		out, errOut, code := bed.Migrate(b, "cutover", dir, "--json")
		b.StopTimer()
		time.Sleep(time.Second)
		res := load.Stop()
		if code != 0 {
			b.Fatalf("cutover: %s %s", out, errOut)
		}
		var sum migrate.CutoverResult
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, `"type":"summary"`) {
				json.Unmarshal([]byte(line), &sum)
			}
		}
		holds, maxes = append(holds, sum.HoldTime), append(maxes, res.Max)
		failed += res.Failed
		bed.Close()
	}
	p99 := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[(len(s)*99)/100]
	}
	b.ReportMetric(float64(p99(holds).Milliseconds()), "hold-p99-ms")
	b.ReportMetric(float64(p99(maxes).Milliseconds()), "slowest-request-p99-ms")
	b.ReportMetric(float64(failed), "failed-requests")
	b.Logf("hold times %v; slowest request per run %v; %d failed", holds, maxes, failed)
}
