// Package e2e holds the foundation end-to-end tests (build tag e2e): the
// migrate binary, run from the test runner, reaching the hosts of an
// internal/testbed bed over real OpenSSH sshd and running its agent there.
// Run them as root: go test -tags e2e ./e2e
package e2e
