package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/migrate-tool/migrate/internal/accesslog"
)

var agents = []string{
	"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"curl/8.5.0",
	"Wget/1.21.3",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
	"Googlebot/2.1 (+http://www.google.com/bot.html)",
}

var statuses = []int{200, 200, 200, 200, 200, 304, 301, 404, 200, 500}

// genLine appends line i of a log in format f, 1000 lines per second
// starting at start.
func genLine(b []byte, f accesslog.Format, i int, start time.Time) []byte {
	t := start.Add(time.Duration(i/1000) * time.Second)
	client := "198.51.100." + strconv.Itoa(i%250+1)
	if i%7 == 0 {
		client = fmt.Sprintf("2001:db8::%x", i%500)
	}
	path := "/static/img/" + strconv.Itoa(i%5000) + ".png?v=" + strconv.Itoa(i%13)
	st := statuses[i%len(statuses)]
	size := (i*7919)%50000 + 100
	ua := agents[i%len(agents)]
	clf := t.Format("02/Jan/2006:15:04:05 -0700")
	sys := t.Format("Jan _2 15:04:05") + " old pound[812]: "
	switch f {
	case accesslog.Common:
		return fmt.Appendf(b, "%s - - [%s] \"GET %s HTTP/1.1\" %d %d\n", client, clf, path, st, size)
	case accesslog.Combined:
		return fmt.Appendf(b, "%s - - [%s] \"GET %s HTTP/1.1\" %d %d \"https://www.example.com/\" \"%s\"\n", client, clf, path, st, size, ua)
	case accesslog.VhostCombined:
		return fmt.Appendf(b, "www.example.com:443 %s - - [%s] \"GET %s HTTP/1.1\" %d %d \"https://www.example.com/\" \"%s\"\n", client, clf, path, st, size, ua)
	case accesslog.Pound1:
		return fmt.Appendf(b, "%s%s GET %s HTTP/1.1 - HTTP/1.1 %d OK\n", sys, client, path, st)
	case accesslog.Pound2:
		return fmt.Appendf(b, "%s%s GET %s HTTP/1.1 - HTTP/1.1 %d OK (www.example.com/web -> 10.231.0.2:8080) 0.003 sec\n", sys, client, path, st)
	case accesslog.Pound3:
		return fmt.Appendf(b, "%swww.example.com %s - - [%s] \"GET %s HTTP/1.1\" %d %d \"\" \"%s\"\n", sys, client, clf, path, st, size, ua)
	case accesslog.Pound4:
		return fmt.Appendf(b, "%s%s - - [%s] \"GET %s HTTP/1.1\" %d %d \"\" \"%s\"\n", sys, client, clf, path, st, size, ua)
	case accesslog.Pound5:
		return fmt.Appendf(b, "%swww.example.com %s - - [%s] \"GET %s HTTP/1.1\" %d %d \"\" \"%s\" (web -> 10.231.0.2:8080) 0.012 sec\n", sys, client, clf, path, st, size, ua)
	case accesslog.HAProxy:
		hap := t.Format("02/Jan/2006:15:04:05") + fmt.Sprintf(".%03d", i%1000)
		return fmt.Appendf(b, "%s%s:%d [%s] http-in web/srv1 0/0/1/3/4 %d %d - - ---- 12/12/3/3/0 0/0 \"GET %s HTTP/1.1\"\n",
			t.Format("Jan _2 15:04:05")+" lb haproxy[4242]: ", client, 30000+i%30000, hap, st, size, path)
	}
	panic("unknown format " + f)
}

// writeLog writes n lines of format f to w.
func writeLog(w io.Writer, f accesslog.Format, n int, start time.Time) error {
	buf := make([]byte, 0, 1<<20)
	for i := 0; i < n; i++ {
		buf = genLine(buf, f, i, start)
		if len(buf) > 1<<20-4096 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return err
}
