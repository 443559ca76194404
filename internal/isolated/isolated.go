// Package isolated guards the integration tests. They make mounts, loop
// devices, cgroups, bridges and iptables rules, which must vanish with the
// test process and never touch the host's: they run as root and PID 1 of
// fresh pid, net and mount namespaces, made by Command. Anywhere else they
// skip, saying how to run them, so that a run without the namespaces shows
// what it left out instead of passing with nothing run.
package isolated

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// Command runs the integration tests the only way they may run.
const Command = "go test -tags integration -exec 'unshare --pid --net --mount --fork --mount-proc' ./..."

// Check reports why this process may not run integration tests, or nil:
// it must be root and PID 1 of its pid namespace.
func Check() error {
	switch {
	case os.Geteuid() != 0:
		return errors.New("not root")
	case os.Getpid() != 1:
		return fmt.Errorf("pid %d, not PID 1 of a fresh pid namespace", os.Getpid())
	}
	return nil
}

// Require skips tb unless Check passes.
func Require(tb testing.TB) {
	tb.Helper()
	if err := Check(); err != nil {
		tb.Skipf("integration test needs fresh namespaces (%v): %s", err, Command)
	}
}

// RequireNet is Require, and also skips tb unless this network namespace
// holds nothing but lo and links whose names start with one of prefixes
// (those a test of the same binary made): proof that it is not the
// host's, whose network a test must never touch.
func RequireNet(tb testing.TB, prefixes ...string) {
	tb.Helper()
	Require(tb)
	links, err := netlink.LinkList()
	if err != nil {
		tb.Skipf("cannot list network links, so cannot tell this netns from the host's: %v", err)
	}
	var foreign []string
	for _, l := range links {
		name := l.Attrs().Name
		if name != "lo" && !hasAnyPrefix(name, prefixes) {
			foreign = append(foreign, name)
		}
	}
	if len(foreign) > 0 {
		tb.Skipf("network namespace has links %v: not a fresh one; %s", foreign, Command)
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Tmpfs mounts a tmpfs of size (mount's size= syntax, e.g. "1m") on a new
// temporary directory and returns it, detached when tb ends: a small real
// filesystem on which the kernel's own ENOSPC can be met. It requires what
// Require does.
func Tmpfs(tb testing.TB, size string) string {
	tb.Helper()
	Require(tb)
	dir := tb.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		tb.Fatalf("mount a %s tmpfs: %v", size, err)
	}
	tb.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// Loopback brings lo up when this process is PID 1 of fresh namespaces
// whose network namespace holds nothing but lo (the integration runner
// runs every package's tests that way, and a fresh namespace has lo
// down); anywhere else it does nothing: the host's lo is up, and the
// host's network is never touched. Tests on 127.0.0.1 call it first
// (TestMain).
func Loopback() {
	if Check() != nil {
		return
	}
	links, err := netlink.LinkList()
	if err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" {
		return
	}
	_ = netlink.LinkSetUp(links[0])
}
