#!/usr/bin/env bash
# Hold time of a cutover: nginx with a 100 MB docroot moved under a load of
# 300 requests/s, on a fresh test bed per run (root; see docs/testbed.md).
# Prints the p99 over the runs of the hold time (old address held ->
# released) and of the slowest request, against the 2 s target.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-5}
out=$(go test -tags e2e -run '^$' -bench '^BenchmarkCutoverHold$' -benchtime "${runs}x" -timeout 30m ./migrate/ 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -E 'Benchmark|hold times'
hold=$(echo "$out" | grep -o '[0-9.]* hold-p99-ms' | cut -d' ' -f1)
slow=$(echo "$out" | grep -o '[0-9.]* slowest-request-p99-ms' | cut -d' ' -f1)
failed=$(echo "$out" | grep -o '[0-9.]* failed-requests' | cut -d' ' -f1)
awk -v h="$hold" -v s="$slow" -v f="$failed" -v n="$runs" 'BEGIN {
	printf "runs %d: hold p99 %d ms (target < 2000 ms: %.2fx of the budget), slowest request p99 %d ms, failed requests %d\n", n, h, h/2000, s, f
}'
