package driver

import (
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/spec"
)

func TestSplitDev(t *testing.T) {
	s := &spec.Container{
		NamespaceKeep: []string{"ipc"},
		Mounts: []spec.Mount{
			// A user mount over /dev/shm stays the init's, after the tree.
			{Source: "tmpfs", Target: "dev/shm", FSType: "tmpfs", Options: []string{"size=1m"}},
		},
	}
	tr, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: s})
	if err != nil {
		t.Fatal(err)
	}
	before := len(tr.Config.Mounts)
	dt := splitDev(tr.Config, "/state/c@dev")
	if dt == nil {
		t.Fatal("no tree for the runtime's /dev")
	}
	var dests []string
	for _, m := range tr.Config.Mounts {
		dests = append(dests, m.Destination)
	}
	if got := len(tr.Config.Mounts); got != before-2 {
		t.Errorf("%d mounts left of %d, want the tmpfs, devpts and shm replaced by one bind: %v", got, before, dests)
	}
	bind := tr.Config.Mounts[1]
	if bind.Destination != "/dev" || bind.Device != "bind" || bind.Source != "/state/c@dev" || bind.Flags != unix.MS_BIND|unix.MS_REC {
		t.Errorf("/dev mount = %+v, want a recursive bind of the tree", bind)
	}
	if !needsNoSetupDev(tr.Config) {
		t.Error("libcontainer would still make /dev")
	}
	if dt.tmpfs.Device != "tmpfs" || len(dt.subs) != 2 || dt.subs[0].Device != "devpts" || dt.subs[1].Destination != "/dev/shm" {
		t.Errorf("tree = %+v %+v", dt.tmpfs, dt.subs)
	}
	if last := tr.Config.Mounts[len(tr.Config.Mounts)-1]; last.Destination != "/dev/shm" || last.Data != "size=1m" {
		t.Errorf("user mount on /dev/shm moved or lost: %v", dests)
	}
	names := map[string]bool{}
	for _, d := range dt.nodes {
		names[d.Path] = true
	}
	for _, want := range []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"} {
		if !names[want] {
			t.Errorf("node %s missing from %v", want, names)
		}
	}
	if names["/dev/ptmx"] {
		t.Error("/dev/ptmx is a node; libcontainer makes it a link to pts/ptmx")
	}

	// A user namespace keeps libcontainer's own /dev.
	tr, err = Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{}})
	if err != nil {
		t.Fatal(err)
	}
	tr.Config.Namespaces = append(tr.Config.Namespaces, configs.Namespace{Type: configs.NEWUSER})
	if dt := splitDev(tr.Config, "/x"); dt != nil || needsNoSetupDev(tr.Config) {
		t.Errorf("split with a user namespace: %+v", dt)
	}

	// Without a /dev tmpfs there is nothing to move.
	cfg := &configs.Config{Mounts: []*configs.Mount{{Source: "/host/dev", Destination: "/dev", Device: "bind", Flags: unix.MS_BIND}}}
	if dt := splitDev(cfg, "/x"); dt != nil || cfg.Mounts[0].Source != "/host/dev" {
		t.Errorf("bind-mounted /dev was split: %+v %+v", dt, cfg.Mounts[0])
	}
}

// needsNoSetupDev is libcontainer's test (rootfs_linux.go needsSetupDev)
// for leaving /dev alone: a bind mount at /dev.
func needsNoSetupDev(cfg *configs.Config) bool {
	for _, m := range cfg.Mounts {
		if m.Device == "bind" && m.Destination == "/dev" {
			return true
		}
	}
	return false
}
