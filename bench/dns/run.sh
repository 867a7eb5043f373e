#!/bin/sh
# Benchmark: `dnscheck` against N = 1, 4, 16 in-process authoritative
# servers that each answer after 20 ms. Prints the time per check and its
# ratio to N = 1: about 1.0 means one query round whatever N is (a
# server-by-server check would be N times slower).
# Usage: bench/dns/run.sh [benchtime, default 30x]   (run from the repo root)
set -eu
cd "$(dirname "$0")/../.."
go test -run '^$' -bench 'BenchmarkCheck(Servers|DeadServer)' -benchtime "${1:-30x}" ./dnscheck |
awk '
/^BenchmarkCheckServers\/servers=/ {
	split($1, a, "="); sub(/-[0-9]+$/, "", a[2]); n = a[2]; ms = $3 / 1e6
	if (n == 1) base = ms
	printf "N=%-3d  %7.1f ms/check  ratio to N=1: %.2f  (one-at-a-time would be ~%d)  rounds: %s\n", n, ms, ms / base, n, $5
}
/^BenchmarkCheckDeadServer/ { printf "N=16, one dead (timeout 100 ms): %.1f ms/check = %s timeouts\n", $3 / 1e6, $5 }
/^(ok|FAIL|PASS)/ { print }'
