// Package hint attaches a one-line suggestion to an error, so that the
// command line can print "error:" and "hint:" lines without the library
// that found the problem knowing how it is printed.
package hint

import "errors"

// Error is an error with a hint for the user on what to do about it.
type Error struct {
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// With wraps err with a hint. A nil err stays nil.
func With(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, Hint: hint}
}

// Of returns the outermost hint attached to err, or "".
func Of(err error) string {
	var h *Error
	if errors.As(err, &h) {
		return h.Hint
	}
	return ""
}

// ExitCoder is implemented by errors that ask for a specific exit code
// (see the exit codes in docs/cli.md).
type ExitCoder interface {
	ExitCode() int
}

// exitError carries an exit code.
type exitError struct {
	err  error
	code int
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

// WithExit marks err to end the program with the given exit code.
func WithExit(err error, code int) error {
	if err == nil {
		return nil
	}
	return &exitError{err: err, code: code}
}

// Exit codes shared by every command.
const (
	ExitOK        = 0
	ExitFailed    = 1
	ExitUsage     = 2
	ExitPartial   = 3
	ExitCancelled = 130
)

// Code returns the exit code err asks for, or ExitFailed.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var c ExitCoder
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return ExitFailed
}
