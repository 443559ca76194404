//go:build integration

package actors_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/internal/wire"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/driver"
	_ "github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/runtime/testrootfs"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testrootfs.Cleanup()
	os.Exit(code)
}

// A Go panic in a container actor, with a real container running: pantavisor
// survives, the actor restarts and re-adopts the same container (same pid),
// and the container is still supervised afterwards.
func TestPanicKeepsRealContainer(t *testing.T) {
	isolated.Require(t)
	dir := t.TempDir()
	trail := filepath.Join(dir, "trails", "0")
	if err := revtest.Build(dir, testrootfs.Squashfs(t), nil, []revtest.Container{{
		Name: "app", Cmd: `/bin/sh "-c" "exec sleep 1000"`, LXC: []string{"lxc.namespace.keep = user net ipc"},
		Run: map[string]any{"auto_recovery": map[string]any{"policy": "no"}},
	}}); err != nil {
		t.Fatal(err)
	}
	st, err := state.LoadTrail(trail, state.Options{AppEngine: true})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := driver.New(driver.Options{StateRoot: t.TempDir(), CgroupParent: "pv-panic-test"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng := &engine.Engine{Layout: storage.Layout{Root: dir}, Rev: "0", State: st, Driver: drv, WorkDir: t.TempDir(), Log: log}
	sys, err := actors.Start(actors.Config{Rev: "0", State: st, Engine: wire.Engine(eng), Log: log, StopTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	app := func() messages.ContainerInfo {
		cs, err := sys.Containers()
		if err != nil || len(cs) != 1 {
			t.Fatalf("containers: %v %v", cs, err)
		}
		return cs[0]
	}
	deadline := time.Now().Add(20 * time.Second)
	for app().Status != messages.StatusStarted {
		if time.Now().After(deadline) {
			t.Fatalf("not started: %+v", app())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid := app().Pid
	actors.InjectPanic(sys, "app")
	time.Sleep(200 * time.Millisecond)
	if c := app(); c.Status != messages.StatusStarted || c.Pid != pid {
		t.Fatalf("after the panic: %s pid %d, was pid %d", c.Status, c.Pid, pid)
	}
	if _, err := os.Stat("/proc/" + itoa(pid) + "/stat"); err != nil {
		t.Fatalf("the container's process is gone: %v", err)
	}
	node := sys.Tree().Children[0].Children[0]
	if node.ActorRestarts != 1 {
		t.Errorf("actor restarts: %d", node.ActorRestarts)
	}
	// Still supervised: killing the container is seen by the new incarnation.
	if err := killPid(pid); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for app().Status != messages.StatusFailed {
		if time.Now().After(deadline) {
			t.Fatalf("exit not seen after the panic: %+v", app())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if err := eng.Close(); err != nil {
		t.Error(err)
	}
}
