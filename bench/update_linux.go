package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/internal/wire"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/runtime/rootfs"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/updater"
)

// updN is the number of containers of the update figures' revisions.
const updN = 10

// bigObject and smallObject are the sizes of the extra object of the boot
// figure.
const (
	bigObject   = 200 << 20
	smallObject = 1 << 20
)

func init() {
	Register(Figure{
		Name: fmt.Sprintf("non-reboot update of 1 container in a %d-container revision: LOCAL_RUN → changed container STARTED (new pid; the %d others keep theirs: checked)",
			updN, updN-1),
		Baseline: fmt.Sprintf("stop and start of the whole revision (Shutdown + actors.Start to all %d STARTED)", updN),
		Unit:     "ms",
		Goal:     0.5,
		Needs:    containerNeeds(),
		Run:      nonRebootUpdate,
	})
	Register(Figure{
		Name: fmt.Sprintf("rollback: tried revision's container exits (auto_recovery no) → previous revision's %d containers STARTED (Shutdown, Device.Start, actors.Start)",
			updN),
		Baseline: "cold start of the previous revision (Device.Start + actors.Start to all STARTED)",
		Unit:     "ms",
		Goal:     1.5,
		Needs:    containerNeeds(),
		Run:      rollbackTime,
	})
	Register(Figure{
		Name: fmt.Sprintf("boot of a %d-container revision with a %d MB object: Device.Start → all STARTED",
			updN, bigObject>>20),
		Baseline: fmt.Sprintf("the same revision with a %d MB object", smallObject>>20),
		Unit:     "ms",
		Goal:     1.1,
		Needs:    containerNeeds(),
		Run:      bigObjectBoot,
	})
}

// sleepers are n sleeping containers c00, c01, ...
func sleepers(n int) []benchCtr {
	var ctrs []benchCtr
	for i := range n {
		ctrs = append(ctrs, benchCtr{name: fmt.Sprintf("c%02d", i), cmd: sleeperCmd, lxc: upstreamLXC})
	}
	return ctrs
}

// updDevice is a device wired as cmd/pantavisor's appengine wires it, in
// this process: an updater.Device over a storage holding revision 0, the
// appengine bootloader, one driver, and an engine per revision sharing
// one rootfs.Lowers. Every engine records into rec.
type updDevice struct {
	f            *fixture
	dir          string
	layout       storage.Layout
	dev          *updater.Device
	drv          *driver.Driver
	lowers       *rootfs.Lowers
	rec          *recorder
	log          *slog.Logger
	cgroupParent string
	sys          *actors.System
	reboot       chan string
	// decided is how long the last boot's Device.Start took.
	decided time.Duration
}

func newUpdDevice(f *fixture, name string, rev0 []benchCtr) (*updDevice, error) {
	dir := filepath.Join(f.dir, name)
	layout := storage.Layout{Root: filepath.Join(dir, "storage")}
	if err := buildStorage(layout.Root, f.image, rev0); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(layout.Boot(), 0o755); err != nil {
		return nil, fmt.Errorf("boot directory: %w", err)
	}
	cgroupParent := "pvbench-" + name + "-" + f.tag
	drv, err := driver.New(driver.Options{StateRoot: filepath.Join(dir, "libcontainer"), CgroupParent: cgroupParent})
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	log := quietLog()
	return &updDevice{f: f, dir: dir, layout: layout, drv: drv, log: log, cgroupParent: cgroupParent,
		dev:    &updater.Device{Layout: layout, Bootloader: bootloader.AppEngine{Dir: layout.Boot()}, State: state.Options{AppEngine: true}, Log: log},
		lowers: rootfs.NewLowers(filepath.Join(dir, "volumes", "@lowers")),
		rec:    newRecorder(nil),
	}, nil
}

// newEngine is cmd/pantavisor's NewEngine.
func (d *updDevice) newEngine(rev string, st *state.State) actors.Engine {
	return d.rec.engine(wire.Engine(&engine.Engine{Layout: d.layout, Rev: rev, State: st, Driver: d.drv,
		Lowers: d.lowers, WorkDir: filepath.Join(d.dir, "volumes"), Log: d.log}))
}

// installRev installs revision rev made of ctrs, plus the objects in extra
// (key → sha, already stored), as an update would: every object through
// PutObject (verified and marked), then InstallTrail.
func (d *updDevice) installRev(rev string, ctrs []benchCtr, extra map[string]string) error {
	tmp := filepath.Join(d.dir, "build")
	defer os.RemoveAll(tmp)
	if err := buildStorage(tmp, d.f.image, ctrs); err != nil {
		return err
	}
	objs, err := os.ReadDir(filepath.Join(tmp, "objects"))
	if err != nil {
		return fmt.Errorf("install %s: %w", rev, err)
	}
	for _, o := range objs {
		if err := putFile(d.layout, o.Name(), filepath.Join(tmp, "objects", o.Name())); err != nil {
			return fmt.Errorf("install %s: %w", rev, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(tmp, "trails", "0", ".pvr", "json"))
	if err != nil {
		return fmt.Errorf("install %s: %w", rev, err)
	}
	if len(extra) > 0 {
		var st map[string]any
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("install %s: %w", rev, err)
		}
		for k, sha := range extra {
			st[k] = sha
		}
		if data, err = json.Marshal(st); err != nil {
			return fmt.Errorf("install %s: %w", rev, err)
		}
	}
	return d.layout.InstallTrail(rev, data, storage.InstallOptions{})
}

func putFile(l storage.Layout, sha, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = l.PutObject(sha, f, 0)
	return err
}

// putGenerated stores an object of size bytes of a fixed pattern through
// PutObject, without a copy of it elsewhere, and returns its name.
func putGenerated(l storage.Layout, size int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(pattern{}, size)); err != nil {
		return "", err
	}
	sha := hex.EncodeToString(h.Sum(nil))
	if _, err := l.PutObject(sha, io.LimitReader(pattern{}, size), 0); err != nil {
		return "", err
	}
	// What the boot figure is about: a boot trusts the mark and reads
	// nothing of the object.
	if fi, err := os.Stat(l.Object(sha)); err != nil || !storage.Verified(fi) {
		return "", fmt.Errorf("object %s not marked verified by PutObject (%v)", sha, err)
	}
	return sha, nil
}

// pattern reads as an endless sequence of non-zero, non-constant bytes.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*31 + i>>8 + 1)
	}
	return len(p), nil
}

// boot is the device's boot: Device.Start decides, and the tree starts
// what it decided, wired as cmd/pantavisor wires it. commitDelay is
// PV_UPDATER_COMMIT_DELAY.
func (d *updDevice) boot(commitDelay time.Duration) (updater.Boot, error) {
	t0 := time.Now()
	b, err := d.dev.Start()
	d.decided = time.Since(t0)
	if err != nil {
		return b, fmt.Errorf("boot decision: %w", err)
	}
	if b.State == nil {
		return b, fmt.Errorf("boot decision runs nothing: reboot %q, safe mode %q", b.Reboot, b.SafeMode)
	}
	return b, d.start(actors.Config{Rev: b.Rev, State: b.State, Updates: d.dev, Trying: b.Trying,
		TryProgress: b.TryProgress, CommitDelay: commitDelay})
}

// start starts a tree on cfg with the device's wiring.
func (d *updDevice) start(cfg actors.Config) error {
	reboot := make(chan string, 1)
	d.reboot = reboot
	cfg.Engine, cfg.NewEngine, cfg.Log, cfg.StopTimeout = d.newEngine(cfg.Rev, cfg.State), d.newEngine, d.log, 5*time.Second
	cfg.OnReboot = func(why string) {
		select {
		case reboot <- why:
		default:
		}
	}
	sys, err := actors.Start(cfg)
	if err != nil {
		return fmt.Errorf("start actors: %w", err)
	}
	d.sys = sys
	return nil
}

// waitAll polls the tree every millisecond until it shows n containers,
// all STARTED, and returns them.
func (d *updDevice) waitAll(n int, timeout time.Duration) ([]messages.ContainerInfo, error) {
	var cs []messages.ContainerInfo
	err := waitFor(fmt.Sprintf("%d containers STARTED", n), timeout, func() bool {
		var err error
		cs, err = d.sys.Containers()
		return err == nil && len(cs) == n && allStarted(cs)
	})
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", err, summary(cs))
	}
	return cs, nil
}

func allStarted(cs []messages.ContainerInfo) bool {
	for _, c := range cs {
		if c.Status != messages.StatusStarted || c.Pid == 0 {
			return false
		}
	}
	return true
}

// shutdown stops the running tree, once its sleepers can obey SIGTERM
// (see waitTrapped; 0: known to), and returns how long Shutdown took.
func (d *updDevice) shutdown(sleeping int) (time.Duration, error) {
	if d.sys == nil {
		return 0, nil
	}
	var werr error
	if sleeping > 0 {
		werr = waitTrapped(sleeping, time.Minute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	el, err := Elapsed(func() error { return d.sys.Shutdown(ctx, "bench") })
	d.sys = nil
	return el, errors.Join(werr, err)
}

// close stops what still runs and checks that the driver left no cgroup
// and the shared lowers no image mounted.
func (d *updDevice) close() error {
	var errs []error
	if d.sys != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		errs = append(errs, d.sys.Shutdown(ctx, "bench done"))
		cancel()
	}
	if n := d.lowers.Len(); n > 0 {
		errs = append(errs, fmt.Errorf("%d images left mounted by the engines", n))
	}
	errs = append(errs, d.drv.Close())
	if cg := cgroupDirs(d.cgroupParent); len(cg) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left by the driver: %v", cg), removeCgroups(d.cgroupParent))
	}
	return errors.Join(errs...)
}

// withUpdDevice runs fn on a device of its own, in a fixture of its own,
// and cleans both up.
func withUpdDevice(name string, rev0 []benchCtr, fn func(d *updDevice) error) (err error) {
	f, err := newFixture()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.close()) }()
	d, err := newUpdDevice(f, name, rev0)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close()) }()
	return fn(d)
}

// nonRebootUpdate boots revision 0 (updN sleepers), installs locals/b
// (the same with the last container's init command changed) and times
// RunRevision to the changed container STARTED with a new pid, polling
// the tree every millisecond; at every poll the other containers must
// show STARTED with their pids, and their processes must be alive. The
// baseline, in the same run, is a Shutdown of the tree and an
// actors.Start of revision 0 to all STARTED.
func nonRebootUpdate() (ours, base float64, err error) {
	a := sleepers(updN)
	b := slices.Clone(a)
	changed := b[updN-1].name
	b[updN-1].cmd = `/bin/sh "-c" "trap 'exit 0' TERM; sleep 999 & wait"`
	err = withUpdDevice("nonreboot", a, func(d *updDevice) error {
		if err := d.installRev("locals/b", b, nil); err != nil {
			return err
		}
		stA, err := d.dev.Load("0")
		if err != nil {
			return err
		}
		if _, err := d.boot(10 * time.Millisecond); err != nil {
			return err
		}
		before, err := d.waitAll(updN, time.Minute)
		if err != nil {
			return err
		}
		if err := waitTrapped(updN, time.Minute); err != nil {
			return err
		}
		time.Sleep(settle)
		pids := map[string]int{}
		for _, c := range before {
			pids[c.Name] = c.Pid
		}
		disturbed := map[string]string{}
		polls, blind := 0, 0
		t0 := time.Now()
		if err := d.sys.RunRevision("locals/b", false); err != nil {
			return err
		}
		var el time.Duration
		werr := waitFor(changed+" STARTED with a new pid", time.Minute, func() bool {
			cs, err := d.sys.Containers()
			now := time.Now()
			polls++
			for name, pid := range pids {
				if name != changed && unix.Kill(pid, 0) != nil {
					disturbed[name] = fmt.Sprintf("process %d gone", pid)
				}
			}
			if err != nil || len(cs) == 0 {
				blind++
				return false
			}
			done := false
			for _, c := range cs {
				switch {
				case c.Name == changed:
					done = c.Status == messages.StatusStarted && c.Pid != 0 && c.Pid != pids[changed]
				case c.Status != messages.StatusStarted || c.Pid != pids[c.Name]:
					if _, seen := disturbed[c.Name]; !seen {
						disturbed[c.Name] = fmt.Sprintf("shown %s pid %d (was %d)", c.Status, c.Pid, pids[c.Name])
					}
				}
			}
			if done {
				el = now.Sub(t0)
			}
			return done
		})
		if werr != nil {
			return werr
		}
		after, err := d.waitAll(updN, time.Minute)
		if err != nil {
			return err
		}
		for _, c := range after {
			if c.Name != changed && c.Pid != pids[c.Name] {
				disturbed[c.Name] = fmt.Sprintf("pid %d, was %d", c.Pid, pids[c.Name])
			}
		}
		logf("non-reboot update: %v over %d polls (%d without an answer listing the containers); unchanged containers disturbed: %d of %d %v",
			el.Round(time.Microsecond), polls, blind, len(disturbed), updN-1, disturbed)
		if len(disturbed) > 0 {
			return fmt.Errorf("%d of the %d unchanged containers were disturbed by the update: %v", len(disturbed), updN-1, disturbed)
		}
		time.Sleep(settle)
		stop, err := d.shutdown(updN)
		if err != nil {
			return err
		}
		t1 := time.Now()
		if err := d.start(actors.Config{Rev: "0", State: stA}); err != nil {
			return err
		}
		if _, err := d.waitAll(updN, time.Minute); err != nil {
			return err
		}
		start := time.Since(t1)
		logf("baseline: Shutdown %v + start %v", stop.Round(time.Microsecond), start.Round(time.Microsecond))
		ours, base = float64(el)/1e6, float64(stop+start)/1e6
		_, err = d.shutdown(updN)
		return err
	})
	return ours, base, err
}

// rollbackTime tries locals/bad (revision 0 with the last container
// failing after a second, auto_recovery no) as the boot after a LOCAL_RUN
// does, and times, from that container's exit as the engine saw it, root's
// rollback (ERROR, pv_try cleared, OnReboot) and the in-process reboot:
// Shutdown, Device.Start (which must pick revision 0 again) and
// actors.Start to all STARTED. The baseline, in the same run, is a cold
// start of revision 0 (Device.Start + actors.Start to all STARTED).
func rollbackTime() (ours, base float64, err error) {
	a := sleepers(updN)
	bad := slices.Clone(a)
	failing := bad[updN-1].name
	// The second lets the others install their SIGTERM trap before the
	// rollback stops them (see waitTrapped); it is not timed.
	bad[updN-1].cmd = `/bin/sh "-c" "sleep 1; exit 1"`
	bad[updN-1].run = map[string]any{"auto_recovery": map[string]any{"policy": "no"}}
	err = withUpdDevice("rollback", a, func(d *updDevice) error {
		if err := d.installRev("locals/bad", bad, nil); err != nil {
			return err
		}
		if _, err := d.dev.Install("locals/bad"); err != nil {
			return err
		}
		// A commit delay longer than the failing container's second: the
		// failure comes while the revision is under test.
		b, err := d.boot(time.Minute)
		if err != nil {
			return err
		}
		if b.Rev != "locals/bad" || !b.Trying {
			return fmt.Errorf("boot decision: running %s (trying %v), want locals/bad tried", b.Rev, b.Trying)
		}
		// Before the failing container exits, so that the measured span
		// holds no wait of the bench's.
		if err := waitTrapped(updN-1, time.Minute); err != nil {
			return err
		}
		trapped := time.Now()
		var why string
		select {
		case why = <-d.reboot:
		case <-time.After(time.Minute):
			return fmt.Errorf("no rollback within a minute")
		}
		requested := time.Now()
		_, _, exits := d.rec.times(failing)
		if len(exits) != 1 {
			return fmt.Errorf("%s exited %d times, want 1", failing, len(exits))
		}
		if trapped.After(exits[0]) {
			logf("rollback: the sleepers trapped SIGTERM %v after the failing container's exit: the wait is in the figure",
				trapped.Sub(exits[0]).Round(time.Microsecond))
		}
		stop, err := d.shutdown(0)
		if err != nil {
			return err
		}
		t1 := time.Now()
		b, err = d.boot(time.Minute)
		if err != nil {
			return err
		}
		if b.Rev != "0" || b.Trying {
			return fmt.Errorf("boot after rollback: running %s (trying %v), want 0", b.Rev, b.Trying)
		}
		if _, err := d.waitAll(updN, time.Minute); err != nil {
			return err
		}
		el := time.Since(exits[0])
		logf("rollback %v: exit → reboot requested %v, Shutdown %v, boot to all STARTED %v (%s)", el.Round(time.Microsecond),
			requested.Sub(exits[0]).Round(time.Microsecond), stop.Round(time.Microsecond), time.Since(t1).Round(time.Microsecond), why)
		if p, err := d.layout.ReadProgress("locals/bad"); err != nil || p.Status != storage.StatusError {
			return fmt.Errorf("progress of locals/bad after the rollback: %+v, %v; want ERROR", p, err)
		}
		if _, err := d.shutdown(updN); err != nil {
			return err
		}
		time.Sleep(settle)
		cold, err := Elapsed(func() error {
			if _, err := d.boot(time.Minute); err != nil {
				return err
			}
			_, err := d.waitAll(updN, time.Minute)
			return err
		})
		if err != nil {
			return err
		}
		ours, base = float64(el)/1e6, float64(cold)/1e6
		_, err = d.shutdown(updN)
		return err
	})
	return ours, base, err
}

// bigPairs is the number of boots of each side in one run of the boot
// figure.
const bigPairs = 3

// bigRuns counts the boot figure's runs: they decide which side goes
// first.
var bigRuns int

// bigObjectBoot installs locals/big and locals/small, revision 0 with an
// extra object c00/big.bin of bigObject and smallObject bytes, through
// PutObject, and times, for each, Device.Start (which loads the trail)
// and actors.Start to all STARTED, the revision being committed (pv_rev);
// it returns the medians of bigPairs boots of each.
func bigObjectBoot() (ours, base float64, err error) {
	a := sleepers(updN)
	err = withUpdDevice("bigobject", a, func(d *updDevice) error {
		for rev, size := range map[string]int64{"locals/big": bigObject, "locals/small": smallObject} {
			sha, err := putGenerated(d.layout, size)
			if err != nil {
				return err
			}
			if err := d.installRev(rev, a, map[string]string{"c00/big.bin": sha}); err != nil {
				return err
			}
		}
		bootOf := func(rev string, into *time.Duration) func() error {
			return func() error {
				if err := d.dev.Commit(rev); err != nil {
					return err
				}
				el, err := Elapsed(func() error {
					b, err := d.boot(time.Minute)
					if err == nil && b.Rev != rev {
						err = fmt.Errorf("boot decision ran %s, want %s", b.Rev, rev)
					}
					if err != nil {
						return err
					}
					_, err = d.waitAll(updN, time.Minute)
					return err
				})
				*into = el
				logf("boot of %s: Device.Start %v, to all STARTED %v", rev, d.decided.Round(time.Microsecond), el.Round(time.Microsecond))
				if err != nil {
					return err
				}
				_, err = d.shutdown(updN)
				return err
			}
		}
		// A boot's spread on two cores is larger than what the figure
		// looks for: each run takes the medians of bigPairs pairs.
		var bigs, smalls []time.Duration
		for range bigPairs {
			var big, small time.Duration
			if err := alternate(&bigRuns, bootOf("locals/big", &big), bootOf("locals/small", &small)); err != nil {
				return err
			}
			bigs, smalls = append(bigs, big), append(smalls, small)
			time.Sleep(settle)
		}
		ours, base = medianMs(bigs), medianMs(smalls)
		logf("boots with the %d MB object %v (median %.1f ms), with the %d MB one %v (median %.1f ms)",
			bigObject>>20, bigs, ours, smallObject>>20, smalls, base)
		return nil
	})
	return ours, base, err
}
