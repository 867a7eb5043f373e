// Command drain measures how fast the drain watcher's log side follows a
// log: tail (internal/tail) + parse (internal/accesslog, format detected)
// + count (internal/traffic), end to end, per format, against the target
// of 1 million lines per second.
//
// Two runs per format: "file" follows a pre-written log from its start
// (the file is in the page cache; measures the pipeline), "live" follows
// a log while a writer appends to it in 64 KiB writes as fast as it can
// (measures keeping up with a writer through inotify).
//
//	go run ./bench/drain -lines 2000000
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/internal/accesslog"
	"github.com/migrate-tool/migrate/internal/tail"
	"github.com/migrate-tool/migrate/internal/traffic"
)

const target = 1e6

var skipAgent bool

func main() {
	lines := flag.Int("lines", 2000000, "lines per generated log")
	dir := flag.String("dir", "", "directory for the generated logs (default: a temp dir, removed after)")
	only := flag.String("format", "", "run only this format")
	prof := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.BoolVar(&skipAgent, "skip-agent", false, "parse with SkipAgent too (no user agent and referer)")
	flag.Parse()
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			fmt.Fprintln(os.Stderr, "drain bench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*lines, *dir, *only); err != nil {
		fmt.Fprintln(os.Stderr, "drain bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

var formats = []accesslog.Format{
	accesslog.Common, accesslog.Combined, accesslog.VhostCombined,
	accesslog.Pound1, accesslog.Pound2, accesslog.Pound3, accesslog.Pound4, accesslog.Pound5,
	accesslog.HAProxy,
}

func run(n int, dir, only string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "drainbench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	fmt.Printf("drain log pipeline: tail + detect/parse (SkipPath, SkipAgent=%v) + count, %d lines per format, GOMAXPROCS=%d, %s\n",
		skipAgent, n, runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Printf("target %.0f lines/s; the machine is shared, figures are noisy\n\n", target)
	workers := runtime.GOMAXPROCS(0)
	fmt.Printf("columns: file = follow the finished log from its start; live = follow while a writer appends it;\n")
	fmt.Printf("1w = one parsing goroutine (accesslog.Parser), %dw = accesslog.Batch with %d workers;\n", workers, workers)
	fmt.Printf("per CPU-s = lines per second of CPU time used by this process (the 1w file run)\n\n")
	fmt.Printf("%-15s %5s %12s %12s %12s %12s %6s %s\n", "format", "MB", "file 1w/s", "(per CPU-s)", fmt.Sprintf("file %dw/s", workers), fmt.Sprintf("live %dw/s", workers), "x tgt", "detected")
	worst := -1.0
	for _, f := range formats {
		if only != "" && string(f) != only {
			continue
		}
		path := filepath.Join(dir, string(f)+".log")
		fh, err := os.Create(path)
		if err != nil {
			return err
		}
		start := time.Date(2026, 11, 21, 10, 0, 0, 0, time.Local)
		if err := writeLog(fh, f, n, start); err != nil {
			return err
		}
		fh.Close()
		fi, _ := os.Stat(path)
		cpu0 := cpuTime()
		serialRate, det, err := follow(path, n, nil, 1)
		cpuRate := float64(n) / (cpuTime() - cpu0).Seconds()
		if err != nil {
			return fmt.Errorf("%s file: %w", f, err)
		}
		fileRate, _, err := follow(path, n, nil, workers)
		if err != nil {
			return fmt.Errorf("%s file: %w", f, err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		livePath := path + ".live"
		liveRate, _, err := follow(livePath, n, data, workers)
		if err != nil {
			return fmt.Errorf("%s live: %w", f, err)
		}
		os.Remove(path)
		os.Remove(livePath)
		worstHere := min(fileRate, liveRate)
		fmt.Printf("%-15s %5.0f %12.0f %12.0f %12.0f %12.0f %6.2f %s\n", f, float64(fi.Size())/1e6,
			serialRate, cpuRate, fileRate, liveRate, worstHere/target, det)
		for _, r := range []float64{fileRate, liveRate} {
			if worst < 0 || r < worst {
				worst = r
			}
		}
	}
	verdict := "MEETS"
	if worst < target {
		verdict = "MISSES"
	}
	fmt.Printf("\nslowest (%dw, file or live): %.0f lines/s = %.2fx the 1M lines/s target: %s (load %s)\n",
		workers, worst, worst/target, verdict, loadavg())
	return nil
}

// follow tails path from its start until n lines have been parsed and
// counted, parsing with the given number of workers. With data, path is
// created empty and data is appended to it concurrently in 64 KiB writes.
func follow(path string, n int, data []byte, workers int) (rate float64, detected accesslog.Format, err error) {
	if data != nil {
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			return 0, "", err
		}
	}
	b, err := accesslog.NewBatch("auto", accesslog.Options{SkipPath: true, SkipAgent: skipAgent}, workers)
	if err != nil {
		return 0, "", err
	}
	win := traffic.NewWindow(time.Now(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tl := tail.New(path, tail.Options{FromStart: true})
	parsed, bad := 0, 0
	count := func(r *accesslog.Record) {
		parsed++
		win.Add(r.Time, r.Client)
	}
	done := make(chan error, 1)
	go func() {
		done <- tl.Run(ctx, func(lines [][]byte) error {
			bad += b.Parse(lines, count)
			if parsed+bad >= n {
				cancel()
			}
			return nil
		})
	}()
	<-tl.Ready()
	began := time.Now()
	if data != nil {
		go appendChunks(ctx, path, data)
	}
	if err := <-done; err != nil && ctx.Err() == nil {
		return 0, "", err
	}
	el := time.Since(began)
	if parsed+bad < n {
		return 0, "", fmt.Errorf("only %d of %d lines after %v", parsed+bad, n, el)
	}
	if bad > 0 {
		return 0, "", fmt.Errorf("%d of %d lines did not parse", bad, n)
	}
	return float64(n) / el.Seconds(), b.Format(), nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "unknown"
	}
	return string(bytes.Join(bytes.Fields(b)[:3], []byte(" ")))
}

// cpuTime is the user+system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func appendChunks(ctx context.Context, path string, data []byte) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	for len(data) > 0 && ctx.Err() == nil {
		chunk := data[:min(64<<10, len(data))]
		// Cut at a line end, as a server writing whole lines would.
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 && len(chunk) < len(data) {
			chunk = chunk[:i+1]
		}
		if _, err := f.Write(chunk); err != nil {
			return
		}
		data = data[len(chunk):]
	}
}
