package migrate

import (
	"encoding/json"
	"io"
	"sync"
)

func ioPipe() (*io.PipeReader, *io.PipeWriter) { return io.Pipe() }

func readBatches(r io.Reader, mu *sync.Mutex, out *[]FollowBatch) {
	dec := json.NewDecoder(r)
	for {
		var b FollowBatch
		if err := dec.Decode(&b); err != nil {
			io.Copy(io.Discard, r)
			return
		}
		mu.Lock()
		*out = append(*out, b)
		mu.Unlock()
	}
}
