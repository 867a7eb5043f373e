#!/bin/sh
# Benchmark `migrate capture` against tar --zstd of the same file list, the
# naive baseline (dpkg -L + ldd + tar --zstd) and, for nginx, ReproZip
# (reprozip trace + reprozip pack), all in one run. Needs root: the services
# run in a private network, mount and PID namespace so nothing touches the
# real /run, /srv, /var/spool/postfix or /var/mail, and nothing binds a port
# outside it. Prints one line per measurement and the ratios.
#
#   bench/capture/run.sh            # from the repository root
#   SERVICES=nginx ROUNDS=5 bench/capture/run.sh   # one service, more rounds
#
# The machine may be shared: figures are noisy (see docs/capture.md).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/migrate-bench-capture.XXXXXX)
ns=migbench$$
cleanup() {
	ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	[ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT INT TERM
[ "$(id -u)" = 0 ] || { echo "bench/capture: needs root" >&2; exit 1; }
(cd "$root" && CGO_ENABLED=0 go build -o "$work/migrate" ./cmd/migrate)
ip netns add "$ns"
ip netns exec "$ns" unshare --mount --pid --fork --mount-proc --propagation private \
	sh "$root/bench/capture/inner.sh" "$work" | tee "$work/results.txt"
