//go:build integration

package integration

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/internal/wire"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/network/nat"
	"github.com/pantavisor/pv/runtime/driver"
	_ "github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/runtime/testrootfs"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// netSnapshot lists this namespace's links and iptables rules (both
// backends), to compare before and after a revision ran.
func netSnapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		b.WriteString("link " + l.Attrs().Name + " " + l.Type() + "\n")
	}
	for _, bin := range []string{"iptables-nft", "iptables-legacy"} {
		for _, table := range []string{"filter", "nat"} {
			out, err := exec.Command(bin, "-w", "-t", table, "-S").CombinedOutput()
			if err != nil {
				t.Fatalf("%s -t %s -S: %v: %s", bin, table, err, out)
			}
			b.WriteString(bin + " " + table + "\n")
			for _, l := range strings.Split(string(out), "\n") {
				// Reading the legacy tables creates them, after which the
				// nft tool warns about them: not a rule, not ours.
				if !strings.HasPrefix(l, "# Warning") {
					b.WriteString(l + "\n")
				}
			}
		}
	}
	return b.String()
}

// The revision runs in this test process (in its own namespaces), so the
// bridges, veths and rules its pools create are in the test's network
// namespace: after a shutdown, none may remain, with either backend.
func TestShutdownRemovesEveryLinkAndRule(t *testing.T) {
	requireIsolatedNet(t)
	for _, backend := range []string{nat.NFTBinary, nat.LegacyBinary} {
		t.Run(backend, func(t *testing.T) {
			before := netSnapshot(t)
			storageDir := poolsDevice(t)
			st, err := state.LoadTrail(filepath.Join(storageDir, "trails", "0"), state.Options{AppEngine: true})
			if err != nil {
				t.Fatal(err)
			}
			drv, err := driver.New(driver.Options{StateRoot: t.TempDir(), CgroupParent: "pv-inproc-" + strings.TrimPrefix(backend, "iptables-")})
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			eng := &engine.Engine{Layout: storage.Layout{Root: storageDir}, Rev: "0", State: st, Driver: drv, WorkDir: t.TempDir(), Log: log}
			sys, err := actors.Start(actors.Config{Rev: "0", State: st, Engine: wire.Engine(eng), Log: log,
				StopTimeout: 5 * time.Second, PoolNet: wire.Pools(&engine.Pools{Iptables: backend, Isolation: true})})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				cs, err := sys.Containers()
				up := err == nil && len(cs) == 3
				for _, c := range cs {
					up = up && c.Status == messages.StatusStarted && c.IPv4Address != ""
				}
				if up {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("containers not up: %+v", cs)
				}
				time.Sleep(50 * time.Millisecond)
			}
			during := netSnapshot(t)
			for _, want := range []string{"link pvbr0 bridge", "link pvbr1 bridge", "MASQUERADE", "-j DROP"} {
				if !strings.Contains(during, want) {
					t.Errorf("while running, %q is missing:\n%s", want, during)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := sys.Shutdown(ctx, "test"); err != nil {
				t.Fatal(err)
			}
			if err := eng.Close(); err != nil {
				t.Error(err)
			}
			if after := netSnapshot(t); after != before {
				t.Errorf("left behind after shutdown:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if m := testrootfs.MountsUnder(storageDir); len(m) > 0 {
				t.Errorf("mounts left: %v", m)
			}
		})
	}
}
