package actors

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// gcLayout is a storage with trails for revs, each referring to an object
// of its own, and a revision-persistent volume per revision.
func gcLayout(t *testing.T, revs ...string) storage.Layout {
	t.Helper()
	l := storage.Layout{Root: t.TempDir()}
	for _, rev := range revs {
		content := "root of " + rev
		sum := sha256.Sum256([]byte(content))
		sha := hex.EncodeToString(sum[:])
		if _, err := l.PutObject(sha, strings.NewReader(content), 0); err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(map[string]any{"#spec": state.SpecSystem1, "app/root.squashfs": sha})
		if err := l.InstallTrail(rev, data, storage.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		vol := l.RevisionDisk(rev, "app", "data")
		if err := os.MkdirAll(vol, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vol, "db"), []byte("user data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// gcAsCtrl does what ctrl's RUN_GC does with the revisions root names; it
// removes nothing when root gives no answer (ctrl then refuses the GC).
func gcAsCtrl(t *testing.T, sys *System, l storage.Layout) (removed, keep []string) {
	t.Helper()
	revs, err := sys.Revisions()
	if err != nil {
		return nil, nil
	}
	keep = append(revs.Revisions(), "0")
	rep, err := l.GC(storage.GCOptions{Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	return rep.Revisions, keep
}

// envFailing is update storage whose bootloader variables cannot be read
// (an I/O error on boot/uboot.txt, fw_printenv failing).
type envFailing struct{ *fakeUpdates }

func (envFailing) Env() (string, string, error) {
	return "", "", errors.New("load boot/uboot.txt: input/output error")
}

// While revision 2 is tried with 1 committed (the rollback target), a
// bootloader read error made root name no committed revision: RUN_GC
// removed revision 1, and the rollback of a failed try booted a revision
// that was gone. Root's answer now fails, and nothing is removed.
func TestGCKeepsTheCommittedRevisionWhenTheBootloaderIsUnreadable(t *testing.T) {
	u := newFakeUpdates("1")
	p := storage.NewProgress(storage.StatusInProgress, storage.MsgTry)
	rig := &updateRig{e: newFakeEngine(), u: u, reboots: make(chan string, 4)}
	cfg := Config{Rev: "2", State: appState(t, "/sbin/init", "/bin/a", nil), Trying: true, TryProgress: &p,
		CommitDelay: time.Hour, Engine: rig.e, Updates: envFailing{u},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.NewEngine = func(string, *state.State) Engine { return rig.e }
	cfg.OnReboot = func(why string) { rig.reboots <- why }
	rig.sys = startSystemCfg(t, cfg)
	u.waitStatus(t, "2", storage.StatusTesting)
	if _, err := rig.sys.Revisions(); err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("Revisions() err = %v, want the bootloader's error", err)
	}
	l := gcLayout(t, "0", "1", "2")
	if removed, keep := gcAsCtrl(t, rig.sys, l); slices.Contains(removed, "1") {
		t.Fatalf("GC removed the committed revision 1: keep %q, removed %q", keep, removed)
	}
}

// Two non-reboot updates in a row (1 -> locals/b -> locals/c, pv_rev
// still 1): app, changed by locals/b and kept by locals/c, still runs on
// the volumes and logs locals/b's engine made for it. RUN_GC removed
// locals/b under it; root now names locals/b as backing a running
// container.
func TestGCKeepsTheRevisionOfAContainerKeptTwice(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)

	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil) // app changes
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	u.waitStatus(t, "locals/b", storage.StatusUpdated)
	waitStatus(t, rig.sys, allStarted)
	appPid := rig.pids(t)["app"]

	next := appDoc("/sbin/init", "/bin/b", nil) // app unchanged, other changes
	next["other/conf.json"] = map[string]any{"exec": "/bin/other2"}
	u.states["locals/c"] = parseState(t, next)
	if err := rig.sys.RunRevision("locals/c", false); err != nil {
		t.Fatal(err)
	}
	u.waitStatus(t, "locals/c", storage.StatusUpdated)
	waitStatus(t, rig.sys, allStarted)
	if got := rig.pids(t)["app"]; got != appPid {
		t.Fatalf("app was restarted by locals/c (%d -> %d): the premise does not hold", appPid, got)
	}

	l := gcLayout(t, "0", "1", "locals/b", "locals/c")
	removed, keep := gcAsCtrl(t, rig.sys, l)
	if slices.Contains(removed, "locals/b") {
		t.Fatalf("GC removed locals/b, whose volumes app (pid %d) still runs on: keep %q, removed %q", appPid, keep, removed)
	}
	if _, err := os.Stat(l.RevisionDisk("locals/b", "app", "data")); err != nil {
		t.Errorf("app's revision volume: %v", err)
	}
}
