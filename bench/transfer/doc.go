// Package transferbench is the transfer benchmark: run.sh runs its test
// (build tag "bench") on the test bed and prints figures and ratios.
package transferbench
