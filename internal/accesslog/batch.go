package accesslog

import (
	"runtime"
	"sync"
)

// Batch parses batches of lines on several goroutines, each with its own
// Parser, and hands the records back in line order on the caller's
// goroutine. It is for following busy logs on a multi-core machine; small
// batches are parsed on the caller's goroutine alone. Not safe for
// concurrent use.
type Batch struct {
	workers []*batchWorker
}

type batchWorker struct {
	p    *Parser
	recs []Record
	ok   []bool
}

// minParallel is the batch size below which Batch does not fan out.
const minParallel = 512

// NewBatch returns a Batch with n workers (n <= 0: GOMAXPROCS) parsing
// the named format ("" or "auto" detects, in each worker).
func NewBatch(name string, opts Options, n int) (*Batch, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	b := &Batch{}
	for i := 0; i < n; i++ {
		p, err := NewParser(name, opts)
		if err != nil {
			return nil, err
		}
		b.workers = append(b.workers, &batchWorker{p: p})
	}
	return b, nil
}

// Format is the format of the first worker, which sees the first lines.
func (b *Batch) Format() Format { return b.workers[0].p.Format() }

// Parse parses lines and calls fn, on the calling goroutine and in line
// order, for every line that parsed. It returns how many did not. The
// Record passed to fn is reused after fn returns.
func (b *Batch) Parse(lines [][]byte, fn func(r *Record)) (skipped int) {
	n := len(b.workers)
	if len(lines) < minParallel || n == 1 {
		n = 1
	}
	per := (len(lines) + n - 1) / n
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		lo, hi := min(i*per, len(lines)), min((i+1)*per, len(lines))
		wg.Add(1)
		go func(w *batchWorker, part [][]byte) {
			defer wg.Done()
			w.parse(part)
		}(b.workers[i], lines[lo:hi])
	}
	b.workers[0].parse(lines[:min(per, len(lines))])
	wg.Wait()
	for i := 0; i < n; i++ {
		w := b.workers[i]
		for j := range w.recs {
			if w.ok[j] {
				fn(&w.recs[j])
			} else {
				skipped++
			}
		}
	}
	return skipped
}

func (w *batchWorker) parse(lines [][]byte) {
	if cap(w.recs) < len(lines) {
		w.recs = make([]Record, len(lines))
		w.ok = make([]bool, len(lines))
	}
	w.recs, w.ok = w.recs[:len(lines)], w.ok[:len(lines)]
	for i, l := range lines {
		w.ok[i] = w.p.Parse(l, &w.recs[i]) == nil
	}
}
