package transfer

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// corrupting passes calls through, but for its first n receive calls
// flips a byte in the body of the first file of the stream.
type corrupting struct {
	Caller
	n int
}

func (c *corrupting) CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error {
	if method != MethodReceive || c.n == 0 {
		return c.Caller.CallStream(ctx, method, params, in, out, result)
	}
	c.n--
	var buf bytes.Buffer
	zr, err := zstd.NewReader(in)
	if err != nil {
		return err
	}
	zw, _ := zstd.NewWriter(&buf)
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	flipped := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(tr)
		if h.Typeflag == tar.TypeReg && strings.HasPrefix(h.Name, streamPrefix+"/") && len(body) > 0 && !flipped {
			body[len(body)/2] ^= 1
			flipped = true
		}
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	zw.Close()
	return c.Caller.CallStream(ctx, method, params, &buf, out, result)
}

func TestShipResendsOnceThenReports(t *testing.T) {
	needRoot(t)
	fs := newTestFS("rs").dir("/d").file("/d/a", randBytes(100<<10)).file("/d/b", randBytes(50<<10))
	arch := fs.write(t)

	// Damaged once: sent again and fixed.
	dest := t.TempDir()
	st, err := Ship(context.Background(), &corrupting{Caller: pipe(t), n: 1}, arch, Options{Dest: dest, NoReuse: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Resent) != 1 || st.Resent[0] != "/d/a" || st.FilesSent != 2 {
		t.Fatalf("%+v", st)
	}
	if got := readFile(t, dest+"/rs/root/d/a"); !bytes.Equal(got, fs.bodies["/d/a"]) {
		t.Fatal("file not repaired")
	}

	// Damaged every time: reported, root not complete.
	dest = t.TempDir()
	_, err = Ship(context.Background(), &corrupting{Caller: pipe(t), n: 5}, arch, Options{Dest: dest, NoReuse: true})
	if err == nil || !strings.Contains(err.Error(), "did not arrive intact") {
		t.Fatalf("err = %v", err)
	}
	if (Layout{Dest: dest, Name: "rs"}).Complete() != "" {
		t.Fatal("root marked complete")
	}
}
