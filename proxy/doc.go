// Package proxy forwards clients that still reach the old host to the new
// one: HTTP/1.1 (with HTTPS listeners and backends), TCP and UDP, with
// passive and active health checks, Emergency failover, sessions, metrics,
// a control socket and an access log. It reads Pound's configuration
// language, so existing Pound setups keep working unchanged.
//
// The HTTP path does not use net/http: requests and responses are parsed
// with pooled bufio buffers and bodies are streamed (spliced where the
// kernel allows), which keeps the CPU cost per request close to HAProxy's.
package proxy
