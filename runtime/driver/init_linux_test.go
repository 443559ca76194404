package driver

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pantavisor/pv/runtime/driver/initshim"
)

// goBuild builds the package pkg (a directory, or source files) into
// dir/name with the go tool that runs the tests.
func goBuild(tb testing.TB, dir, name string, pkg ...string) string {
	tb.Helper()
	out := filepath.Join(dir, name)
	args := append([]string{"build", "-o", out}, pkg...)
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %v: %v\n%s", pkg, err, b)
	}
	return out
}

// OpenInit refuses what could not be this build's container init, and
// says why; nothing is left open.
func TestOpenInitRefuses(t *testing.T) {
	dir := t.TempDir()
	// A Go program without libcontainer: another build, whatever it is.
	hello := filepath.Join(dir, "hello.go")
	if err := os.WriteFile(hello, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	goBuild(t, other, initshim.InitName, hello)
	notGo := filepath.Join(dir, "notgo")
	if err := os.Mkdir(notGo, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notGo, initshim.InitName), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
		is               error
	}{
		{"wrong name", filepath.Join(other, "init"), "must be named pvinit", nil},
		{"missing", filepath.Join(dir, "none", initshim.InitName), "no such file", nil},
		{"not a Go program", filepath.Join(notGo, initshim.InitName), "read build info", nil},
		{"another build", filepath.Join(other, initshim.InitName), "github.com/opencontainers/runc", ErrInitMismatch},
	}
	before := openFds(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ci, err := OpenInit(tt.path, dir)
			if err == nil {
				ci.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("err = %v, want it to name %s and say %q", err, tt.path, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
		})
	}
	if after := openFds(t); after != before {
		t.Errorf("descriptors open: %d before, %d after", before, after)
	}
}

func openFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
