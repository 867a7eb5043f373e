#!/bin/sh
# End-to-end throughput of drain's log side (tail + detect/parse + count)
# for every supported format, against the 1M lines/s target, followed by
# the per-format parser micro-benchmarks (ns/line, allocations).
#
#   bench/drain/run.sh [LINES]      default 2000000 lines per format
#
# Logs are generated in a temp dir and removed afterwards. The machine may
# be shared: look at the "per CPU-s" column when the load is high.
set -eu
cd "$(dirname "$0")/../.."
lines=${1:-2000000}
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
go run ./bench/drain -lines "$lines"
echo
echo "== the same with SkipAgent (user agent and referer not read once the format is known)"
go run ./bench/drain -lines "$lines" -skip-agent
echo
echo "== parser micro-benchmarks (drain = SkipPath, as drain.follow uses it; all = every field; minimal = SkipPath+SkipAgent)"
go test -run '^$' -bench 'Parse/|WindowAdd|TailParse' -benchtime 500000x ./bench/drain |
	awk '/^Benchmark/ {
		ns = ""; ls = ""; al = ""; cpu = "-"
		for (i = 2; i <= NF; i++) {
			if ($i == "ns/op") ns = $(i-1)
			if ($i == "lines/s") ls = $(i-1)
			if ($i == "allocs/op") al = $(i-1)
			if ($i == "cpu-ns/line") cpu = $(i-1)
		}
		printf "%-40s %9s ns/line %10.0f lines/s %7s cpu-ns/line %3s allocs/line\n", $1, ns, ls, cpu, al
	}'
