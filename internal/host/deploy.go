package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Remote agent directories. The binary lives at DIR/<sha256>/migrate, so a
// path names exactly one build and a second run finds it in place.
const (
	RootAgentDir = "/var/lib/migrate/agent"
	UserAgentDir = ".cache/migrate/agent" // under $HOME for non-root users
)

// agentBinary describes the local binary deployed as the agent.
type agentBinary struct {
	Path     string
	Size     int64
	SHA256   string
	Machines []string // acceptable `uname -m` values
	Dynamic  bool     // has an ELF interpreter: needs a compatible libc on the host
}

var binCache sync.Map // path -> *agentBinary

// localAgentBinary hashes and inspects the binary at p (cached per path).
func localAgentBinary(p string) (*agentBinary, error) {
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the migrate binary: %w", err)
		}
		p = exe
	}
	if v, ok := binCache.Load(p); ok {
		return v.(*agentBinary), nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, hint.With(fmt.Errorf("agent binary %s is not a Linux ELF executable: %w", p, err),
			"build migrate for Linux (GOOS=linux CGO_ENABLED=0) and point MIGRATE_AGENT_BINARY at it")
	}
	machines := unameMachines(ef.Machine, ef.Class)
	dynamic := false
	for _, p := range ef.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	ef.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("agent binary: hash %s: %w", p, err)
	}
	b := &agentBinary{Path: p, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Machines: machines, Dynamic: dynamic}
	binCache.Store(p, b)
	return b, nil
}

// unameMachines maps an ELF machine to the `uname -m` names that run it.
func unameMachines(m elf.Machine, c elf.Class) []string {
	switch m {
	case elf.EM_X86_64:
		return []string{"x86_64", "amd64"}
	case elf.EM_386:
		return []string{"i386", "i486", "i586", "i686", "x86_64"}
	case elf.EM_AARCH64:
		return []string{"aarch64", "arm64", "armv8l"}
	case elf.EM_ARM:
		return []string{"armv6l", "armv7l", "armv8l", "aarch64"}
	case elf.EM_RISCV:
		return []string{"riscv64"}
	case elf.EM_PPC64:
		return []string{"ppc64le", "ppc64"}
	case elf.EM_S390:
		return []string{"s390x"}
	case elf.EM_LOONGARCH:
		return []string{"loongarch64"}
	}
	return []string{strings.ToLower(strings.TrimPrefix(m.String(), "EM_"))}
}

// probe is what the remote host says about itself and the agent path.
type probe struct {
	OS, Machine string
	UID         int
	Path        string // where the agent belongs
	Size        int64  // -1 when absent
	SHA256      string // "" when absent or sha256sum is missing
}

// probeScript prints, one per line: uname -s, uname -m, the uid, the agent
// path, and when that file exists its size and sha256sum line.
func probeScript(dir, sum string) string {
	dirExpr := quoteWord(RootAgentDir) + `; else d="$HOME"/` + quoteWord(UserAgentDir)
	if dir != "" {
		dirExpr = quoteWord(dir) + "; else d=" + quoteWord(dir)
	}
	return `uname -s; uname -m; u=$(id -u); echo "$u"; if [ "$u" = 0 ]; then d=` + dirExpr + `; fi; ` +
		`p="$d/` + sum + `/migrate"; echo "$p"; ` +
		`if [ -f "$p" ]; then wc -c <"$p"; sha256sum "$p" 2>/dev/null || echo; fi`
}

func parseProbe(out string) (probe, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	p := probe{Size: -1}
	if len(lines) < 4 {
		return p, fmt.Errorf("unexpected answer to the probe: %q", out)
	}
	p.OS, p.Machine, p.Path = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1]), strings.TrimSpace(lines[3])
	uid, err := strconv.Atoi(strings.TrimSpace(lines[2]))
	if err != nil {
		return p, fmt.Errorf("unexpected uid %q in the probe", lines[2])
	}
	p.UID = uid
	if !path.IsAbs(p.Path) {
		return p, fmt.Errorf("agent path %q is not absolute (is $HOME set?)", p.Path)
	}
	if len(lines) >= 5 {
		if n, err := strconv.ParseInt(strings.TrimSpace(lines[4]), 10, 64); err == nil {
			p.Size = n
		}
	}
	if len(lines) >= 6 {
		if f := strings.Fields(lines[5]); len(f) > 0 && len(f[0]) == 64 {
			p.SHA256 = f[0]
		}
	}
	return p, nil
}

// deploy makes sure the agent binary is on the host and returns its
// remote path. It probes once per Host value; the upload happens only
// when the content-addressed path is missing or holds other bytes.
func (h *sshHost) deploy(ctx context.Context) (string, error) {
	h.deployMu.Lock()
	defer h.deployMu.Unlock()
	if h.agentPath != "" {
		return h.agentPath, nil
	}
	bin, err := localAgentBinary(h.opts.AgentBinary)
	if err != nil {
		return "", err
	}
	start := time.Now()
	var out, errOut bytes.Buffer
	script := probeScript(h.opts.AgentDir, bin.SHA256)
	if err := h.run(ctx, script, []string{"probe"}, nil, &out, &errOut); err != nil {
		return "", fmt.Errorf("%s: probe for the agent: %w: %s", h.spec.Raw, err, strings.TrimSpace(errOut.String()))
	}
	p, err := parseProbe(out.String())
	if err != nil {
		return "", fmt.Errorf("%s: %w", h.spec.Raw, err)
	}
	if p.OS != "Linux" {
		return "", hint.With(fmt.Errorf("%s runs %s; the migrate agent runs only on Linux", h.spec.Raw, p.OS),
			"migrate can only act on Linux hosts")
	}
	if !contains(bin.Machines, p.Machine) {
		return "", hint.With(fmt.Errorf("%s is a %s machine but the agent binary %s is built for %s", h.spec.Raw, p.Machine, bin.Path, bin.Machines[0]),
			"build migrate for that architecture (e.g. GOARCH=arm64 CGO_ENABLED=0 go build ./cmd/migrate) and point MIGRATE_AGENT_BINARY at it")
	}
	switch {
	case p.Size == bin.Size && (p.SHA256 == bin.SHA256 || p.SHA256 == ""):
		h.log.Debug("agent already deployed", "path", p.Path, "verified_sha256", p.SHA256 != "", "took", time.Since(start).Round(time.Millisecond))
	default:
		if bin.Dynamic {
			h.log.Warn("the agent binary is dynamically linked and may not run on the host; build it with CGO_ENABLED=0", "binary", bin.Path)
		}
		if p.Size >= 0 {
			h.log.Warn("replacing a damaged agent binary", "path", p.Path, "size", p.Size, "sha256", p.SHA256)
		}
		n, err := h.upload(bin, p.Path)
		if err != nil {
			return "", err
		}
		h.uploads++
		h.uploadBytes += n
		h.log.Debug("agent uploaded", "path", p.Path, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	}
	h.agentPath = p.Path
	return p.Path, nil
}

// upload copies bin to dst over SFTP: a temp file in the same directory,
// chmod 0755, then rename, so dst is either absent or complete.
func (h *sshHost) upload(bin *agentBinary, dst string) (int64, error) {
	c, err := h.sftpClient()
	if err != nil {
		return 0, err
	}
	dir := path.Dir(dst)
	if err := c.MkdirAll(dir); err != nil {
		return 0, hint.With(fmt.Errorf("%s: create %s: %w", h.spec.Raw, dir, err), "check that the remote user may write there and the disk is not full")
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := path.Join(dir, ".migrate.tmp-"+hex.EncodeToString(rnd[:]))
	local, err := os.Open(bin.Path)
	if err != nil {
		return 0, fmt.Errorf("agent binary: %w", err)
	}
	defer local.Close()
	f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return 0, fmt.Errorf("%s: sftp create %s: %w", h.spec.Raw, tmp, err)
	}
	h.log.Debug("uploading agent", "path", dst, "bytes", bin.Size)
	n, err := f.ReadFrom(local)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != bin.Size {
		err = fmt.Errorf("wrote %d of %d bytes", n, bin.Size)
	}
	if err == nil {
		err = c.Chmod(tmp, 0o755)
	}
	if err == nil {
		if err = c.PosixRename(tmp, dst); err != nil {
			err = c.Rename(tmp, dst)
		}
	}
	if err != nil {
		c.Remove(tmp)
		return n, hint.With(fmt.Errorf("%s: upload agent to %s: %w", h.spec.Raw, dst, err), "check free space and permissions on the host")
	}
	return n, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
