package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/agent"
)

// MethodHave is the agent method that tells which of a list of files the
// host it runs on already holds with the same content at the same path.
const MethodHave = "plan.have"

// HaveParams are the parameters of MethodHave.
type HaveParams struct {
	Files []HaveFile `json:"files"`
	Root  string     `json:"root,omitempty"` // prefix for every path (tests); default "/"
}

// HaveFile is one file to look for.
type HaveFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// HaveResult is the answer of MethodHave.
type HaveResult struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

func init() {
	agent.Register(MethodHave, func(ctx context.Context, c *agent.Call) (any, error) {
		var p HaveParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return Have(ctx, p)
	})
}

// Have checks each file: same size, then same SHA-256.
func Have(ctx context.Context, p HaveParams) (*HaveResult, error) {
	root := strings.TrimSuffix(p.Root, "/")
	r := &HaveResult{}
	for _, f := range p.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fi, err := os.Stat(root + f.Path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.Size {
			continue
		}
		if sum, err := fileSHA256(root + f.Path); err == nil && sum == f.SHA256 {
			r.Files++
			r.Bytes += f.Size
		}
	}
	return r, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DefaultBandwidth is the transfer rate the estimates assume: 100 Mbit/s.
const DefaultBandwidth = 100_000_000 / 8

// cutoverOverhead is the fixed part of a cutover estimate: stopping the
// old service, the final delta capture's walk, starting the new one and
// its health check.
const cutoverOverhead = 5 * time.Second

// Summarize fills a MoveSection from a dry-run manifest. now dates the
// "changing" files (modified within the last hour).
func summarizeMove(m *capture.Manifest, now time.Time, bandwidth int64) *MoveSection {
	ms := &MoveSection{Measured: true, Service: m.Service, Entries: len(m.Entries), Bandwidth: bandwidth}
	parts := map[string]*MovePart{}
	var order []string
	for _, e := range m.Entries {
		if e.Type != capture.TypeFile {
			continue
		}
		ms.Files++
		ms.Bytes += e.Size
		k := entryKind(&e)
		p := parts[k]
		if p == nil {
			p = &MovePart{Kind: k}
			parts[k] = p
			order = append(order, k)
		}
		p.Files++
		p.Bytes += e.Size
		if now.Sub(e.MTime) < time.Hour {
			ms.ChangingBytes += e.Size
		}
	}
	for _, k := range []string{"packages", "config", "data", "libraries", "other"} {
		if p := parts[k]; p != nil {
			ms.Parts = append(ms.Parts, *p)
		}
	}
	for _, p := range m.Packages {
		ms.Packages = append(ms.Packages, p.Name)
	}
	slices.Sort(ms.Packages)
	for _, p := range m.Ports {
		ms.Ports = append(ms.Ports, p.Proto+" "+p.Addr+":"+strconv.Itoa(p.Port))
	}
	ms.Start = m.Start
	ms.estimate()
	return ms
}

// estimate sets BytesToSend and the times from the byte counts.
func (ms *MoveSection) estimate() {
	if ms.Bandwidth <= 0 {
		ms.Bandwidth = DefaultBandwidth
	}
	ms.BytesToSend = max(ms.Bytes-ms.PresentBytes, 0)
	ms.EstTransfer = time.Duration(float64(ms.BytesToSend) / float64(ms.Bandwidth) * float64(time.Second)).Round(time.Second)
	ms.EstCutover = cutoverOverhead + time.Duration(float64(ms.ChangingBytes)/float64(ms.Bandwidth)*float64(time.Second)).Round(time.Second)
}

// entryKind sorts a captured file into packages, config, data, libraries
// or other, from the reasons capture gives.
func entryKind(e *capture.Entry) string {
	has := func(prefix string) bool {
		return slices.ContainsFunc(e.Reasons, func(r string) bool { return strings.HasPrefix(r, prefix) })
	}
	switch {
	case has("config") || has("conffile-changed") || has("admin-added"):
		return "config"
	case has("data") || has("state") || has("log"):
		return "data"
	case has("elf-needed") || has("elf-interp"):
		if e.Package != "" && has("package:") {
			return "packages"
		}
		return "libraries"
	case has("package:") || e.Package != "":
		return "packages"
	}
	return "other"
}

func haveList(m *capture.Manifest) []HaveFile {
	var out []HaveFile
	for _, e := range m.Entries {
		if e.Type == capture.TypeFile && e.SHA256 != "" {
			out = append(out, HaveFile{Path: e.Path, Size: e.Size, SHA256: e.SHA256})
		}
	}
	return out
}
