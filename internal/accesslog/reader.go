package accesslog

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"
)

// Reader reads the records of a whole log, skipping lines that do not
// parse (counted in Skipped).
type Reader struct {
	sc      *bufio.Scanner
	p       *Parser
	rec     Record
	err     error
	Lines   int64 // lines read
	Skipped int64 // lines that did not parse
}

// MaxLine is the longest line a Reader accepts; longer lines end the read
// with an error.
const MaxLine = 1 << 20

// NewReader reads lines from r and parses them with p.
func NewReader(r io.Reader, p *Parser) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256<<10), MaxLine)
	return &Reader{sc: sc, p: p}
}

// Next advances to the next record and reports whether there is one.
func (r *Reader) Next() bool {
	for r.sc.Scan() {
		r.Lines++
		if err := r.p.Parse(r.sc.Bytes(), &r.rec); err != nil {
			r.Skipped++
			continue
		}
		return true
	}
	if err := r.sc.Err(); err != nil {
		r.err = fmt.Errorf("read log line %d: %w", r.Lines+1, err)
	}
	return false
}

// Record is the current record; it is overwritten by the next call to Next.
func (r *Reader) Record() *Record { return &r.rec }

// Err is the read error that ended Next, if any.
func (r *Reader) Err() error { return r.err }

// Open opens a log file for reading, decompressing it when its name ends
// in ".gz" (rotated logs).
func Open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	return &gzipFile{Reader: z, f: f}, nil
}

type gzipFile struct {
	*gzip.Reader
	f *os.File
}

func (g *gzipFile) Close() error {
	err := g.Reader.Close()
	if err2 := g.f.Close(); err == nil {
		err = err2
	}
	return err
}
