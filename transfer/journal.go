package transfer

import (
	"encoding/json"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// journalFile records, per path in the root, the sha256 verified and the
// file's identity at that moment (inode, size, mtime, ctime). The final
// verification trusts a file whose identity is unchanged since it was
// verified and hashes every other file again; any write to a file changes
// its ctime, so a file damaged after its check is always hashed again.
const journalFile = "verified.json"

type stamp struct {
	SHA   string `json:"sha256"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	CTime int64  `json:"ctime_ns"`
}

func stampOf(st *unix.Stat_t, sum string) stamp {
	return stamp{SHA: sum, Ino: st.Ino, Size: st.Size, MTime: st.Mtim.Nano(), CTime: st.Ctim.Nano()}
}

type journal struct {
	mu sync.Mutex
	m  map[string]stamp
}

func (l Layout) loadJournal() *journal {
	j := &journal{m: map[string]stamp{}}
	if b, err := os.ReadFile(l.file(journalFile)); err == nil {
		_ = json.Unmarshal(b, &j.m)
	}
	return j
}

func (j *journal) record(real string, s stamp) {
	j.mu.Lock()
	j.m[real] = s
	j.mu.Unlock()
}

// verified reports whether real is unchanged since it was verified to hash
// to sum.
func (j *journal) verified(real, sum string, st *unix.Stat_t) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, ok := j.m[real]
	return ok && s.SHA == sum && s == stampOf(st, sum)
}

func (l Layout) saveJournal(j *journal) error {
	j.mu.Lock()
	b, err := json.Marshal(j.m)
	j.mu.Unlock()
	if err != nil {
		return err
	}
	return l.writeState(journalFile, b)
}

// stampFile records real in the journal after it was verified.
func (t *target) stampFile(real, sum string) {
	if st, err := t.root.Lstat(real); err == nil {
		t.journal.record(real, stampOf(&st, sum))
	}
}
