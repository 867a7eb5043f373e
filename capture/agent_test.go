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

func TestFetch(t *testing.T) {
	files := testFiles()
	var good bytes.Buffer
	if err := Write(&good, testManifest(files), files.open); err != nil {
		t.Fatal(err)
	}
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
