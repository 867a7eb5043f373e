package capture

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fakeHost streams a prepared archive as capture.run would.
type fakeHost struct{ stream []byte }

func (f fakeHost) CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error {
	if method != MethodRun {
		return errors.New("unexpected method " + method)
	}
	_, err := out.Write(f.stream)
	return err
}

// localHost is a fakeHost that is this machine: it records the parameters
// and fails the call with err after streaming, if set.
type localHost struct {
	fakeHost
	params *RunParams
	err    error
}

func (l localHost) IsLocal() bool { return true }

func (l localHost) CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error {
	*l.params = params.(RunParams)
	if err := l.fakeHost.CallStream(ctx, method, params, in, out, result); err != nil {
		return err
	}
	return l.err
}

// A local capture asks for its frames to be checked as they are made and
// is not decoded again; a failure of the capture leaves no file.
func TestFetchLocal(t *testing.T) {
	good := testArchive(t)
	dir := t.TempDir()
	var p RunParams
	out := filepath.Join(dir, "a.tar.zst")
	if _, err := Fetch(context.Background(), localHost{fakeHost{good.Bytes()}, &p, nil}, RunParams{}, out); err != nil {
		t.Fatal(err)
	}
	if !p.CheckFrames {
		t.Error("a local capture did not ask for its frames to be checked")
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, good.Bytes()) {
		t.Fatal("stored archive differs from the stream")
	}
	failed := errors.New("compressed frame failed its check")
	_, err := Fetch(context.Background(), localHost{fakeHost{good.Bytes()}, &p, failed}, RunParams{}, filepath.Join(dir, "b.tar.zst"))
	if !errors.Is(err, failed) {
		t.Fatalf("err = %v, want the capture's", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

func TestFetch(t *testing.T) {
	good := testArchive(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "a.tar.zst")
	if _, err := Fetch(context.Background(), fakeHost{good.Bytes()}, RunParams{}, out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, good.Bytes()) {
		t.Fatal("stored archive differs from the stream")
	}
	bad := filepath.Join(dir, "b.tar.zst")
	damaged := flip(good.Bytes(), good.Len()/2)
	_, err := Fetch(context.Background(), fakeHost{damaged}, RunParams{}, bad)
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("damaged stream: err = %v, want a ParseError", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// testArchive is the archive of the test files.
func testArchive(t *testing.T) *bytes.Buffer {
	t.Helper()
	files := testFiles()
	var b bytes.Buffer
	if err := Write(&b, testManifest(files), files.open); err != nil {
		t.Fatal(err)
	}
	return &b
}
