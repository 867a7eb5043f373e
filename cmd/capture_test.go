package cmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestCaptureFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
		check   func(*CaptureOptions) bool
	}{
		{[]string{"--service", "nginx", "-o", "x"}, "", func(o *CaptureOptions) bool {
			return o.From == "local" && o.Service == "nginx" && o.Output == "x" && o.Trace == "auto"
		}},
		{[]string{"--port", "53", "--dry-run", "--from", "ssh://root@10.0.0.1"}, "", func(o *CaptureOptions) bool {
			return o.Port == 53 && o.DryRun && o.From == "ssh://root@10.0.0.1"
		}},
		{[]string{"-o", "x"}, "name the service with --service NAME or --port N", nil},
		{[]string{"--service", "nginx"}, "-o/--output FILE is required (or use --dry-run)", nil},
		{[]string{"--port", "70000", "-o", "x"}, "--port 70000 is not a port number", nil},
		{[]string{"--service", "nginx", "-o", "x", "--include", "srv"}, "--include srv: give an absolute path on the source host", nil},
		{[]string{"--service", "nginx", "-o", "x", "--trace", "maybe"}, `--trace must be auto, off or require, not "maybe"`, nil},
		{[]string{"--service", "nginx", "-o", "x", "--exclude", "*.bak", "--include", "/srv/extra", "--with-logs"}, "", func(o *CaptureOptions) bool {
			return o.Exclude[0] == "*.bak" && o.Include[0] == "/srv/extra" && o.WithLogs
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var got *CaptureOptions
			f := &Factory{IO: IOStreams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}}
			cmd := NewCmdCapture(f, func(o *CaptureOptions) error { got = o; return nil })
			cmd.SetArgs(tt.args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.ExecuteContext(context.Background())
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got == nil || !tt.check(got) {
				t.Fatalf("err %v, options %+v", err, got)
			}
		})
	}
}

func TestArchiveArgs(t *testing.T) {
	f := &Factory{IO: IOStreams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}}
	var got *ArchiveOptions
	cmd := NewCmdArchive(f, func(o *ArchiveOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"ls", "a.tar.zst"})
	if err := cmd.ExecuteContext(context.Background()); err != nil || got.Verb != "list" || got.File != "a.tar.zst" {
		t.Fatalf("err %v got %+v", err, got)
	}
	cmd = NewCmdArchive(f, nil)
	cmd.SetArgs([]string{"verify"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.ExecuteContext(context.Background()); err == nil || err.Error() != "archive verify takes one FILE" {
		t.Fatalf("err = %v", err)
	}
}
