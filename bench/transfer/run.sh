#!/bin/sh
# Transfer benchmark over the test bed link (run as root). Prints, from one run:
#   throughput of a >=200 MB archive: migrate transfer vs scp (target >= 0.9x)
#   bytes sent / archive size for nginx when the target runs the same distribution (target <= 25%)
#   time from a shipped root on the target to the service answering HTTP (target <= 0.5 s)
# The machine is shared: figures are noisy, run it a few times.
set -e
cd "$(dirname "$0")/../.."
go test -tags bench -count=1 -run TestBenchTransfer -v -timeout 20m ./bench/transfer/ 2>&1 |
	grep -E '^(BENCH|--- |ok|FAIL|panic)|bench_test.go'
