package capture

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/migrate-tool/migrate/internal/testenv"
)

func decodeAll(t *testing.T, b []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(b, nil)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// Frames from zstd(1) and from the Go fallback decode back to their input
// and concatenate into one stream.
func TestFrameEncoders(t *testing.T) {
	src := bytes.Repeat([]byte("a line of a config file, repeated\n"), 4096)
	path := findZstd("", []string{"/usr/bin/zstd", "/bin/zstd"})
	if path == "" {
		testenv.Skip(t, "no working zstd(1) in /usr/bin or /bin (Debian package zstd)")
	}
	cmd := &cmdEncoder{path: path, workers: 2}
	broken := &cmdEncoder{path: filepath.Join(t.TempDir(), "zstd"), workers: 2} // falls back to Go
	defer broken.Close()
	goEnc, err := newGoEncoder(2)
	if err != nil {
		t.Fatal(err)
	}
	defer goEnc.Close()
	var stream []byte
	for _, enc := range []frameEncoder{cmd, broken, goEnc} {
		f := enc.EncodeAll(src, nil)
		if got := decodeAll(t, f); !bytes.Equal(got, src) {
			t.Fatalf("%T: frame decodes to %d bytes, want %d", enc, len(got), len(src))
		}
		stream = append(stream, f...)
	}
	if got := decodeAll(t, stream); !bytes.Equal(got, bytes.Repeat(src, 3)) {
		t.Fatalf("the three frames decode to %d bytes, want %d", len(got), 3*len(src))
	}
	if broken.goEnc == nil {
		t.Error("a zstd(1) that does not run did not fall back to the Go encoder")
	}
	small := src[:smallFrame/2]
	if got := decodeAll(t, cmd.EncodeAll(small, nil)); !bytes.Equal(got, small) || cmd.small == nil {
		t.Fatalf("a small frame: decodes to %d bytes (want %d), Go encoder used: %v", len(got), len(small), cmd.small != nil)
	}
	cmd.Close()
}

func TestFindZstd(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "zstd")
	os.WriteFile(fake, []byte("#!/bin/sh\necho not zstd\n"), 0o755)
	if p := findZstd("", []string{filepath.Join(dir, "missing"), fake}); p != "" {
		t.Errorf("a zstd that writes garbage was chosen: %q", p)
	}
	if p := findZstd("go", []string{"/usr/bin/zstd", "/bin/zstd"}); p != "" {
		t.Errorf("MIGRATE_ZSTD=go still chose %q", p)
	}
}

// lyingEncoder makes valid frames of the wrong bytes: a compressor gone bad.
type lyingEncoder struct{ frameEncoder }

func (l lyingEncoder) EncodeAll(src, dst []byte) []byte {
	bad := bytes.Clone(src)
	bad[len(bad)/2] ^= 1
	return l.frameEncoder.EncodeAll(bad, dst)
}

// With a frameChecker, a frame that does not decode to its input fails the
// writer; without one it goes through (what the check is for).
func TestFrameCheck(t *testing.T) {
	goEnc, err := newGoEncoder(2)
	if err != nil {
		t.Fatal(err)
	}
	defer goEnc.Close()
	check, err := newFrameChecker(2)
	if err != nil {
		t.Fatal(err)
	}
	defer check.close()
	src := bytes.Repeat([]byte("a block of a file body\n"), 50000)
	write := func(enc frameEncoder, c *frameChecker) error {
		var out bytes.Buffer
		zw := sharedFramesWriter(&out, 256<<10, 2, enc)
		zw.check = c
		_, err := zw.Write(src)
		return errors.Join(err, zw.Close())
	}
	if err := write(goEnc, check); err != nil {
		t.Fatalf("a sound encoder failed the check: %v", err)
	}
	if err := write(lyingEncoder{goEnc}, nil); err != nil {
		t.Fatalf("unchecked: %v", err)
	}
	err = write(lyingEncoder{goEnc}, check)
	if err == nil || !strings.Contains(err.Error(), "decodes to other bytes") {
		t.Fatalf("a frame of the wrong bytes: err = %v, want the check to fail", err)
	}
}
