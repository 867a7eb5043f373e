package agent

import (
	"encoding/json"
	"fmt"
	"runtime"
)

// hello is the first frame each side sends.
type hello struct {
	Proto   int    `json:"proto"`
	Version string `json:"version,omitempty"` // build version, informational
	OS      string `json:"os,omitempty"`
	Arch    string `json:"arch,omitempty"`
}

func localHello(version string) hello {
	return hello{Proto: ProtocolVersion, Version: version, OS: runtime.GOOS, Arch: runtime.GOARCH}
}

func checkHello(payload []byte, peer string) (hello, error) {
	var h hello
	if err := json.Unmarshal(payload, &h); err != nil {
		return h, &ProtocolError{fmt.Sprintf("bad hello from %s: %v", peer, err)}
	}
	if h.Proto != ProtocolVersion {
		return h, &ProtocolError{fmt.Sprintf("%s speaks protocol version %d, this migrate speaks %d", peer, h.Proto, ProtocolVersion)}
	}
	return h, nil
}

type request struct {
	ID     uint64          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

type response struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *wireError      `json:"error,omitempty"`
}

type wireError struct {
	Message  string `json:"message"`
	Hint     string `json:"hint,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
}
