// Package e2e holds end-to-end tests of whole migrate commands (build tag
// e2e): the migrate binary, run from the test runner, reaching the hosts of
// an internal/testbed bed over real OpenSSH sshd and running its agent
// there. The foundation tests (facts, host keys, agent deployment, SSH
// authentication) live in facts_test.go, hostkey_test.go, agent_test.go
// and sshauth_test.go. Run them as root: go test -tags e2e ./e2e
package e2e
