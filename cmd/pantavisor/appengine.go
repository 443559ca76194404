package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/ctrl"
	"github.com/pantavisor/pv/ingress"
	"github.com/pantavisor/pv/internal/wire"
	"github.com/pantavisor/pv/logs"
	"github.com/pantavisor/pv/network/nat"
	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/runtime/reaper"
	"github.com/pantavisor/pv/runtime/rootfs"
	"github.com/pantavisor/pv/runtime/writeback"
	"github.com/pantavisor/pv/signature"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/updater"
	"github.com/pantavisor/pv/watchdog"
	"github.com/pantavisor/pv/xconnect"
	"github.com/pantavisor/pv/xconnect/mesh"
)

type appengineOpts struct {
	storage string
	run     string
	config  string
	verbose bool
	// embedded: the device itself (PID 1's supervisor), not an
	// application on a host; cfg is then the configuration already
	// loaded from the device's boot sources.
	embedded bool
	cfg      *config.Config
	// bootedRev is the revision the boot script says it booted (the
	// kernel command line's pv_rev=), embedded mode only: the host's
	// command line is not an appengine's.
	bootedRev string
}

// mode names o's mode in logs and PV_SYSTEM_INIT_MODE.
func (o appengineOpts) mode() string {
	if o.embedded {
		return "embedded"
	}
	return "appengine"
}

// appengineCmd runs the device as an application: the host process
// re-executes itself in fresh pid+mount+net namespaces, where PID 1 is the
// reaper and its only child the supervisor. Bridges, iptables rules and
// mounts live in those namespaces and vanish with them; the control socket
// is a file under --run, reachable from the host.
func appengineCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("appengine", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o appengineOpts
	fs.StringVar(&o.storage, "storage", "", "device storage directory (trails/, objects/, boot/, logs/)")
	fs.StringVar(&o.run, "run", "/run/pantavisor/pv", "run directory: the control socket pv-ctrl is created here")
	fs.StringVar(&o.config, "config", "", "pantavisor.config file")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.storage == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: pantavisor appengine --storage DIR [--run RUN] [--config FILE] [-v]")
		return 2
	}
	var err error
	if o.storage, err = filepath.Abs(o.storage); err != nil {
		fmt.Fprintf(stderr, "pantavisor: %v\n", err)
		return 2
	}
	if o.run, err = filepath.Abs(o.run); err != nil {
		fmt.Fprintf(stderr, "pantavisor: %v\n", err)
		return 2
	}
	// Checked by the supervisor too: the host stage is usually the C one
	// (runtime/reaper, host_linux.c), which leaves every argument to it.
	if fi, err := os.Stat(o.storage); err != nil || !fi.IsDir() {
		fmt.Fprintf(stderr, "pantavisor: storage %s is not a directory\n", o.storage)
		return 2
	}
	if reaper.IsChild() {
		return supervise(o, stderr)
	}
	return hostStage(stderr)
}

// hostStage starts PID 1 in new namespaces and relays termination signals
// to it, so that Ctrl-C stops the device cleanly. The C host stage
// (runtime/reaper) does the same before the Go runtime starts, and this
// one runs only when that one declined (reaper.GoHostEnv, or namespaces
// it could not make, which this one then reports).
func hostStage(stderr io.Writer) int {
	// The marker is for this stage only; the device's configuration
	// would take a PV_* variable for one of its keys.
	os.Unsetenv(reaper.GoHostEnv)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for {
		code, stopped := runOnce(sigs, stderr)
		if code != reaper.ExitReboot || stopped {
			return code
		}
		// A reboot in appengine mode: everything was torn down with the
		// namespaces; boot again, after a pause so that a revision that
		// asks for a reboot at every boot cannot spin the CPU.
		fmt.Fprintln(stderr, "pantavisor: reboot requested: starting again in 1 s")
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "pantavisor: %v during reboot: not starting again\n", s)
			return 0
		case <-time.After(time.Second):
		}
	}
}

// runOnce runs one boot of the device in fresh namespaces, relaying
// signals to it, and returns its exit code and whether it was stopped by a
// relayed signal.
func runOnce(sigs chan os.Signal, stderr io.Writer) (int, bool) {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	// PID 1 of the new namespaces is the reaper (runtime/reaper, before
	// the Go runtime starts); it runs this command again as the supervisor.
	cmd.Env = append(os.Environ(), reaper.PID1Env+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET,
		// Its own process group: a terminal's Ctrl-C reaches only this
		// process, which forwards it once, in order.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "pantavisor: start in new namespaces (needs root): %v\n", err)
		return 1, true
	}
	done := make(chan struct{})
	var stopped atomic.Bool
	go func() {
		for {
			select {
			case s := <-sigs:
				stopped.Store(true)
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), stopped.Load()
		}
		return ee.ExitCode(), stopped.Load()
	}
	if err != nil {
		fmt.Fprintf(stderr, "pantavisor: %v\n", err)
		return 1, true
	}
	return 0, stopped.Load()
}

// supervise is the device: it loads the revision the bootloader names, runs
// it under the actor tree, serves the control socket and, on SIGTERM or
// SIGINT, stops everything in reverse group order and cleans up.
func supervise(o appengineOpts, stderr io.Writer) int {
	// First, before any file, mount or goroutine matters: make sure no
	// container start copies the binary (driver.PrepareExeSealing: the
	// overlay libcontainer prefers, else a sealed copy made once, which
	// re-executes this process — as the supervisor again). The probe uses
	// the parent of libcontainer's state directories.
	os.Setenv(reaper.ChildEnv, "1")
	// Where the container init is, found while this process still runs
	// from its file (a sealed copy has no directory), and kept across the
	// re-execution in the environment.
	initPath := os.Getenv(initPathEnv)
	if initPath == "" {
		if exe, err := os.Executable(); err == nil {
			initPath = driver.InitPath(exe)
			os.Setenv(initPathEnv, initPath)
		}
	}
	sealing, sealErr := driver.PrepareExeSealing(workDir(o))
	os.Unsetenv(reaper.ChildEnv)
	os.Unsetenv(initPathEnv)
	os.Unsetenv(reaper.GenEnv)
	level := &logLevel{verbose: o.verbose}
	if o.cfg != nil {
		level.cfg.Store(o.cfg)
	}
	layout := storage.Layout{Root: o.storage}
	// The configuration picks the bootloader, whose variables pick the
	// revision, whose log directory the log file goes to: until then,
	// logs go to stderr only.
	console, _, _ := newLogger(stderr, "", level)
	if err := protectFromOOM(); errors.Is(err, fs.ErrPermission) {
		// No CAP_SYS_RESOURCE (an appengine in an unprivileged
		// container): the supervisor and containers stay equal.
		console.Info("the supervisor keeps the OOM killer's default", "err", err)
	} else if err != nil {
		console.Warn("the OOM killer may pick the supervisor before a container", "err", err)
	}
	// PID 1's channel: exit statuses of the inits it reaps, and where
	// the control socket is kept for the next supervisor.
	exits, err := reaper.OpenExits(console)
	if err != nil {
		console.Warn("no exit channel from PID 1: a restarted supervisor will not know how containers ended", "err", err)
	}
	defer exits.Close()
	// A supervisor PID 1 started again (the previous one died, or asked
	// to be re-executed) re-adopts the running revision (readopt.go).
	gen := reaper.Generation()
	var running runningRecord
	readopt := false
	if gen > 0 {
		var rerr error
		if running, rerr = loadRunning(workDir(o)); rerr != nil {
			console.Error("started again with nothing to re-adopt: booting", "generation", gen, "err", rerr)
		} else {
			readopt = true
		}
		// The command line says what the boot began with: an earlier
		// supervisor of this boot may have moved to another revision
		// since, without a reboot. If it did, and left no record of
		// it, the variables decide, as they did before pv_rev= was
		// read.
		if !readopt && movedSinceBoot(workDir(o)) {
			console.Warn("the revision changed since the boot: the boot's pv_rev is not taken for the running one")
			o.bootedRev = ""
		}
	}
	cfg := o.cfg
	if cfg == nil {
		cfg = loadConfig(o, console)
		level.cfg.Store(cfg)
	}
	// The watchdog is armed as soon as its settings are known: a
	// supervisor started again must kick the timer its predecessor left
	// running (restartGrace). Its log is the console's until the log
	// file is open.
	wdtLog := &handlerSwitch{}
	wdtLog.set(console.Handler())
	probe := &treeProbe{start: time.Now()}
	if gen > 0 {
		probe.grace = restartGrace
	}
	guard := newWatchdogGuard(cfg, o.embedded, probe, slog.New(wdtLog))
	guard.Enter(watchdog.Booting)
	var site *rpiabSite
	if o.embedded {
		site = &rpiabSite{dir: rpiabDir(o.run), fstype: "vfat", wait: cfg.Duration(config.PVStorageWait), boot: gen == 0}
	}
	bl, err := newBootloader(cfg, layout, o.embedded, site, console)
	if err != nil {
		// Exiting here, before the control socket, made PID 1 reboot,
		// and every boot the same: a reboot loop nobody could look
		// into. The boot decision fails on it instead: safe mode.
		fmt.Fprintf(stderr, "pantavisor: %v\n", err)
		bl = bootloader.Unusable{Err: err}
	}
	env, err := bl.Load()
	if err != nil {
		// Corrupt variables or a U-Boot environment never saved: the
		// boot decision (dev.Start) boots the factory revision, and
		// logs why (writing the variables anew when they are corrupt,
		// never over U-Boot's built-in ones). Any other error: it
		// enters safe mode. Either way the log file is the factory
		// revision's.
		if !errors.Is(err, bootloader.ErrCorrupt) && !errors.Is(err, bootloader.ErrNoValidCopy) {
			fmt.Fprintf(stderr, "pantavisor: read bootloader variables: %v\n", err)
		}
		env = bootloader.Env{}
	}
	rev, _, err := updater.Running(bl, env, o.bootedRev)
	if err != nil {
		// The boot decision says why (safe mode, or a commit finished
		// and a reboot); the committed revision's log tells it.
		rev = env.Committed()
	}
	if readopt {
		rev = running.Rev
	}
	// The name comes from a file anyone with storage access can edit; it
	// becomes a directory, so it is checked first. A bad one logs to
	// stderr only, and the boot decision below refuses it (safe mode).
	logFile := ""
	revErr := storage.CheckRev(rev)
	if revErr == nil {
		logFile = filepath.Join(layout.Logs(rev), "pantavisor", "pantavisor.log")
	}
	log, ownLog, err := newLogger(stderr, logFile, level)
	if err != nil {
		fmt.Fprintf(stderr, "pantavisor: open log: %v\n", err)
		return 1
	}
	defer ownLog.Close()
	wdtLog.set(log.Handler())
	if revErr != nil {
		log.Error("bootloader names a bad revision: no log file", "rev", rev, "err", revErr)
	}
	// The log directory is kept within PV_LOG_MAXSIZE (per file),
	// PV_LOG_DIR_MAXSIZE and logs.DefaultMaxFiles files for as long as
	// the device runs; the running revision's logs go last (none is
	// running under a bad name).
	// The limits are read at each check: the revision's OEM configuration
	// and user-meta may change them while the device runs.
	keeper := &logs.Keeper{Dir: filepath.Join(layout.Root, "logs"), Log: log,
		LimitsNow: func() logs.Limits {
			return logs.Limits{MaxFile: int64(cfg.Int(config.PVLogMaxSize)), MaxDir: int64(cfg.Int(config.PVLogDirMaxSize)),
				MaxFiles: logs.DefaultMaxFiles, Hysteresis: int64(cfg.Int(config.PVLogHysteresisFactor))}
		}}
	if revErr == nil {
		keeper.Current = layout.Logs(rev)
	}
	keepCtx, stopKeeper := context.WithCancel(context.Background())
	defer stopKeeper()
	go keeper.Run(keepCtx)
	log.Info("pantavisor starting", "mode", o.mode(), "storage", o.storage, "bootloader", cfg.String(config.PVBootloaderType),
		"pid", os.Getpid(), "exe_sealing", sealing, "generation", gen)
	if sealErr != nil {
		log.Warn("containers will copy the binary at each start", "err", sealErr)
	}
	// Uploads are checked against the clock; a revision already on the
	// device, at a boot (maybe before any clock) or a LOCAL_RUN, at its
	// signer's time (signature.Verifier.AnyTime).
	uploadOpts := state.Options{AppEngine: !o.embedded, GroupTimeout: cfg.Int(config.PVUpdaterGoalsTimeout),
		Signatures: signatureVerifier(cfg, log)}
	stateOpts := uploadOpts
	if v := uploadOpts.Signatures; v != nil {
		onDevice := *v
		onDevice.AnyTime = true
		stateOpts.Signatures = &onDevice
	}
	dev := &updater.Device{Layout: layout, Bootloader: bl, State: stateOpts, Log: log, BootedRev: o.bootedRev}
	var boot updater.Boot
	if readopt {
		boot, err = dev.Resume(running.Rev, running.Trying)
	} else {
		boot, err = dev.Start()
	}
	switch {
	case err != nil:
		log.Error("boot decision failed: safe mode (control socket up, no containers)", "err", err)
		boot.Rev, boot.SafeMode = rev, err.Error()
	case boot.Reboot != "" && !readopt:
		// Nothing runs: the next boot runs the committed revision.
		log.Error("rebooting", "why", boot.Reboot)
		return reaper.ExitReboot
	case boot.SafeMode != "":
		log.Error("safe mode (control socket up, no containers)", "why", boot.SafeMode)
	}
	rev, st := boot.Rev, boot.State
	// Before anything below copies a setting: the OEM level is above
	// pantavisor.config's.
	oemRev := ""
	if st != nil {
		loadOEMConfig(cfg, layout.Trail(rev), st, o.embedded, log)
		oemRev = rev
	}
	if len(boot.Recovered) > 0 {
		log.Info("storage: removed what interrupted writes left", "files", boot.Recovered)
	}
	if err := isolate(!o.embedded && !readopt); err != nil {
		log.Error("set up namespaces", "err", err)
		return 1
	}
	if site != nil && site.devs != nil {
		// Only rpiab places partitions (newBootloader sets devs): on
		// any other device the directory is no mount to share.
		shareRPiAB(o.run, log)
	}
	work := workDir(o)
	if readopt && rootfs.IsMountpoint(work) {
		// The previous supervisor's: libcontainer's state is there.
	} else if err := mountWork(work); err != nil {
		log.Error("mount work tmpfs", "err", err)
		return 1
	}
	defer unmountWork(work, log)
	if ci := openContainerInit(initPath, work, log); ci != nil {
		defer ci.Close()
	}

	// A run killed with SIGKILL left its container cgroups behind; they
	// hold no process (the pid namespace died with it).
	cgParent := driver.DeviceCgroupParent(o.storage)
	if readopt {
		// The running containers' cgroups: re-adopted below.
	} else if removed, err := removeLeftoverCgroups(cgParent); err != nil {
		log.Warn("cgroups of a previous run left", "err", err)
	} else if len(removed) > 0 {
		log.Info("removed the cgroups a previous run left", "dirs", len(removed))
	}
	drv, err := driver.New(driver.Options{StateRoot: filepath.Join(work, "libcontainer"), CgroupParent: cgParent,
		NoPivotRoot: o.embedded && onInitramfs(), Log: log})
	if err != nil {
		log.Error("container driver", "err", err)
		return 1
	}
	// The socket exists before any container starts: each one gets it
	// bind-mounted at /pantavisor/pv-ctrl.
	sock := filepath.Join(o.run, "pv-ctrl")
	listener, err := controlListener(sock, readopt, exits, log)
	if err != nil {
		log.Error("control socket", "err", err)
		return 1
	}
	// No link or ingress rule may lead to it: pantavisor would connect
	// as itself, which the socket takes for the host.
	if err := xconnect.RefuseSocket(sock); err != nil {
		log.Error("control socket", "err", err)
		return 1
	}
	// The engines of successive revisions (non-reboot updates) share the
	// read-only image mounts: a kept container holds its image while the
	// next revision's engine starts the changed ones.
	lowers := rootfs.NewLowers(filepath.Join(work, "volumes", "@lowers"))
	mkEngine := func(rev string, st *state.State) *engine.Engine {
		return &engine.Engine{Layout: layout, Rev: rev, State: st, Driver: drv, Lowers: lowers,
			WorkDir: filepath.Join(work, "volumes"), CtrlSocket: sock, Log: log}
	}
	newEngine := func(rev string, st *state.State) actors.Engine { return wire.Engine(mkEngine(rev, st)) }
	firstEngine := mkEngine(rev, st)
	pools := &engine.Pools{
		Iptables:  iptablesBinary(cfg.String(config.PVNetIptables)),
		Isolation: cfg.Bool(config.PVNetIsolation),
	}
	books := &journal{work: work, log: log, rec: running}
	var adopted *actors.Adoption
	if readopt && st != nil && boot.SafeMode == "" {
		adopted = adoptRunning(st, running.Books, firstEngine, pools, exits, log)
	}
	reboot, poweroff := make(chan string, 1), make(chan string, 1)
	// The kernel path of tcp ingress (DNAT for clients outside the device)
	// uses the pools' iptables backend: two backends in one namespace do
	// not see each other's rules.
	forwards := nat.NewForwards(iptablesBinary(cfg.String(config.PVNetIptables)))
	if readopt {
		// The listeners add their forwards again; what the dead
		// supervisor forwarded for a rule now gone must not stay.
		if err := forwards.Reset(); err != nil {
			log.Warn("the previous supervisor's ingress forwards may remain", "err", err)
		}
	}
	ingressPlane := &ingress.Plane{Log: log, Kernel: forwards}
	sys, err := actors.Start(actors.Config{
		Rev: rev, State: st, Engine: wire.Engine(firstEngine), NewEngine: newEngine, Log: log, Adopted: adopted,
		PoolNet: wire.Pools(pools),
		Links:   &mesh.Plane{Log: log, Proxies: mesh.Plugins()},
		Ingress: ingressPlane,
		Updates: dev, Trying: boot.Trying, TryProgress: boot.TryProgress,
		CheckRevision: func(rev string, st *state.State) error { return mkEngine(rev, st).Check(st) },
		Tunables: func() actors.Tunables {
			return actors.Tunables{CommitDelay: cfg.Duration(config.PVUpdaterCommitDelay),
				MaxRecoveryDelay: cfg.Duration(config.PVAutoRecoveryMaxDelay),
				GroupTimeout:     cfg.Duration(config.PVUpdaterGoalsTimeout)}
		},
		OnReboot: func(reason string) { offer(reboot, reason) },
		OnRevision: func(rev string, st *state.State, trying bool) {
			books.revision(rev, trying)
			keeper.SetCurrent(layout.Logs(rev))
			// pantavisor's own log moves with the running revision,
			// as the keeper's idea of what is current does.
			if err := ownLog.Move(filepath.Join(layout.Logs(rev), "pantavisor", "pantavisor.log")); err != nil {
				log.Warn("pantavisor's log stays where it was", "err", err)
			}
			if rev != oemRev {
				// A non-reboot update: its OEM configuration
				// applies to what reads the configuration from
				// now on.
				loadOEMConfig(cfg, layout.Trail(rev), st, o.embedded, log)
				oemRev = rev
			}
		},
		OnBooks:    books.books,
		OnPoweroff: func(reason string) { offer(poweroff, reason) },
		OnBooted: func(time.Duration, []string) {
			// Not from the actor that calls this: disarming waits for
			// a kick whose probe asks the root.
			go guard.Enter(watchdog.Running)
			// The boot is a burst of allocations (revision, container
			// configs, libcontainer state) that is garbage by now: give
			// it back to the kernel rather than wait for the scavenger
			// (ARCHITECTURE.md, Performance notes).
			debug.FreeOSMemory()
			if o.embedded {
				logBootFigures(log)
				crashForTest(log)
			}
		},
	})
	if err != nil {
		log.Error("start actors", "err", err)
		return 1
	}
	probe.live.Store(sys)
	if readopt && boot.Reboot != "" {
		log.Warn("rebooting, as the previous supervisor was", "why", boot.Reboot)
		offer(reboot, boot.Reboot)
	}
	if o.embedded {
		hangForTest(sys, log)
	}
	// Re-execution needs PID 1 to start the next supervisor: only under
	// the C reaper (its exit channel tells).
	reexec := make(chan string, 1)
	var onReexec func(string)
	if exits != nil {
		onReexec = func(why string) { offer(reexec, why) }
	}
	stopCtrl := serveControl(listener, sys, drv.CgroupParent(),
		ctrl.Storage{Layout: layout, State: uploadOpts, PutRecord: filepath.Join(o.run, "objects-put")}, cfg, o.run, onReexec, log)
	log.Info("control socket ready", "path", sock)

	sigs := make(chan os.Signal, 2)
	// SIGPWR too: PID 1 forwards it (a UPS daemon's power failure) as a
	// stop, and Go ignores it unless asked for it.
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGPWR)
	reason, code := "", 0
	for reason == "" {
		select {
		case why := <-reexec:
			reexecSupervisor(log, ownLog.Close, "command: "+why)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if exits != nil {
					reexecSupervisor(log, ownLog.Close, "SIGHUP")
				}
				log.Warn("SIGHUP ignored: no PID 1 of pantavisor's to start the supervisor again")
				continue
			}
			reason = "signal " + s.String()
			if o.embedded {
				// As busybox's init reads them: SIGUSR1 halt and
				// SIGUSR2 power off; SIGTERM (and Ctrl-Alt-Del's
				// SIGINT) reboot. SIGPWR, a power failure, powers
				// off in order while there is power left.
				code = reaper.ExitReboot
				if s == syscall.SIGUSR1 || s == syscall.SIGUSR2 || s == syscall.SIGPWR {
					code = reaper.ExitPoweroff
				}
			}
		case why := <-reboot:
			reason, code = "reboot: "+why, reaper.ExitReboot
		case why := <-poweroff:
			reason = "power-off: " + why
			if o.embedded {
				code = reaper.ExitPoweroff
			}
		}
	}
	log.Info("stopping", "reason", reason)
	guard.Enter(watchdog.Stopping)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sys.Shutdown(ctx, reason); err != nil {
		log.Error("shutdown", "err", err)
	}
	// What the containers left in the page cache is written back first,
	// while the watchdog is still kicked: on a slow medium that can take
	// longer than one watchdog timeout, and a reset in the middle of it
	// loses what a clean reboot would have kept. A sync that has not
	// ended within stopSyncWait (a dying disk) is left to go on.
	if o.embedded {
		syncBounded(stopSyncWait, log)
	}
	// The tree has stopped, or would not within the bound. What is left
	// (the control socket's stop, the cgroups, a device's sync and
	// unmounts, PID 1's reboot) may hang on a dying disk while the tree
	// still answers the watchdog's probe: the watchdog gets a last kick
	// and no more, and resets a device that has not rebooted by then.
	guard.Enter(watchdog.Stopped)
	if o.embedded {
		hangStoppedForTest(log)
	}
	stopCtrl()
	// Every container is down: their parent cgroups go too, once the
	// kernel has let go of the last ones.
	if err := drv.Close(); err != nil {
		log.Warn("cgroups left behind", "err", err)
	}
	if o.embedded && code == reaper.ExitReboot {
		code = rebootExit(bl, log)
	}
	log.Info("pantavisor stopped")
	return code
}

// rebootExit is the exit code that asks PID 1 for the reboot bl needs:
// ExitRebootTryboot when it holds an armed tryboot (rpiab: consumed here,
// PID 1 hands it to the firmware), ExitReboot otherwise. A flag that
// cannot be consumed makes a plain reboot: the next boot runs the
// committed revision and reports the try rolled back.
func rebootExit(bl bootloader.Backend, log *slog.Logger) int {
	t, ok := bl.(bootloader.Trybooter)
	if !ok {
		return reaper.ExitReboot
	}
	armed, err := t.TakeTryboot()
	if err != nil {
		log.Error("tryboot flag unreadable: a plain reboot, the update is not tried", "err", err)
		return reaper.ExitReboot
	}
	if armed {
		log.Info("rebooting into the try partition (tryboot)")
		return reaper.ExitRebootTryboot
	}
	return reaper.ExitReboot
}

// reexecSupervisor ends this supervisor so that PID 1 starts the binary's
// file again, which re-adopts everything (an in-place upgrade). Nothing is
// stopped or unmounted, no deferred cleanup runs, and the control socket
// stays with PID 1.
func reexecSupervisor(log *slog.Logger, closeLog func(), why string) {
	log.Info("re-executing the supervisor: the containers keep running", "why", why)
	closeLog()
	os.Exit(reaper.ExitReexec)
}

// The boot test's knobs, each a number of seconds in a variable the
// kernel passes from its command line to init's environment (unknown
// key=value parameters go there), embedded mode only:
//   - hangTestEnv makes the root actor hang for good that long after the
//     start: a hung actor tree stops the watchdog's kicks and the board
//     resets;
//   - crashTestEnv makes the boot's first supervisor kill itself that long
//     after the revision booted: PID 1 starts it again and the next one
//     re-adopts the device;
//   - hangStoppedTestEnv makes the supervisor stall that long once its
//     actor tree has stopped for a reboot or power-off, as a sync on a
//     dead disk does: the watchdog's last kick has been given, and the
//     board resets.
const (
	hangTestEnv        = "_PV_TEST_HANG_ROOT"
	crashTestEnv       = "_PV_TEST_CRASH_SUPERVISOR"
	hangStoppedTestEnv = "_PV_TEST_HANG_STOPPED"
)

func hangForTest(sys *actors.System, log *slog.Logger) {
	testKnob(hangTestEnv, "the root actor will hang (a test of the watchdog)", sys.HangRoot, log)
}

func crashForTest(log *slog.Logger) {
	if reaper.Generation() > 0 {
		return
	}
	testKnob(crashTestEnv, "the supervisor will kill itself (a test of re-adoption)",
		func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }, log)
}

// signatureVerifier checks revisions' signatures as PV_SECUREBOOT_MODE
// asks (nil: disabled), with upstream's trust stores and public key under
// PV_SYSTEM_ETCPANTAVISORDIR/pvs/trust.
func signatureVerifier(cfg *config.Config, log *slog.Logger) *signature.Verifier {
	mode, err := signature.ParseMode(cfg.String(config.PVSecurebootMode))
	if err != nil { // the configuration refuses other values
		log.Error("secure boot", "err", err)
		mode = signature.Lenient // upstream keeps its default
	}
	if mode == signature.Disabled {
		log.Warn("revision signatures are not checked", "PV_SECUREBOOT_MODE", mode)
		return nil
	}
	trust := filepath.Join(cfg.String(config.PVSystemEtcPantavisorDir), "pvs", "trust")
	v := &signature.Verifier{Mode: mode,
		TrustStore:    filepath.Join(trust, cfg.String(config.PVSecurebootTruststore)+".crt"),
		OEMTrustStore: filepath.Join(trust, cfg.String(config.PVSecurebootOEMTruststore)+".crt"),
		OEMName:       cfg.String(config.PVOEMName), PublicKey: filepath.Join(trust, "pub.pem")}
	log.Info("revision signatures are checked", "PV_SECUREBOOT_MODE", mode, "trust_store", v.TrustStore)
	if _, err := os.Stat(v.TrustStore); err != nil {
		// Said once here: every signed revision, the running one too,
		// will be refused with this in its reason.
		log.Info("no trust store: a revision signed with a certificate chain will be refused", "err", err)
	}
	return v
}

// stopSyncWait bounds the write-back of the page cache after the tree's
// stop, before the watchdog's last kick.
const stopSyncWait = 2 * time.Minute

// syncBounded writes the page cache back, waiting for it at most wait:
// one that has not ended by then (a dying disk) is left to go on in a
// process of its own (package writeback), and logged. It reports whether
// it ended.
func syncBounded(wait time.Duration, log *slog.Logger) bool {
	if writeback.Sync(wait) {
		return true
	}
	log.Error("the storage's write-back has not ended: going on without it", "waited", wait)
	return false
}

func hangStoppedForTest(log *slog.Logger) {
	if d, ok := knobSeconds(hangStoppedTestEnv, "the supervisor stalls after its stop (a test of the watchdog)", log); ok {
		time.Sleep(d)
	}
}

// testKnob runs fn as many seconds from now as the variable name says,
// when it is set.
func testKnob(name, what string, fn func(), log *slog.Logger) {
	if d, ok := knobSeconds(name, what, log); ok {
		time.AfterFunc(d, fn)
	}
}

// knobSeconds reads the variable name, a number of seconds, and logs what
// it does when it is set.
func knobSeconds(name, what string, log *slog.Logger) (time.Duration, bool) {
	v := os.Getenv(name)
	if v == "" {
		return 0, false
	}
	secs, err := strconv.Atoi(v)
	if err != nil || secs < 0 {
		log.Error("ignored: not a number of seconds", "var", name, "value", v)
		return 0, false
	}
	log.Warn(what, "var", name, "seconds", secs)
	return time.Duration(secs) * time.Second, true
}

// offer hands v to whoever reads ch, unless a value is waiting already:
// the first reboot or power-off request wins.
func offer(ch chan string, v string) {
	select {
	case ch <- v:
	default:
	}
}

// newBootloader is the backend PV_BOOTLOADER_TYPE names. In appengine
// mode the default is the appengine backend (a file in storage's boot/);
// a type set in the configuration is used as it is, so that a bootloader
// backend can run its whole update cycle in appengine mode too. rpiab
// needs its partitions, which site places (a device's: nil in appengine
// mode, where rpiab is refused for want of them); its partitions are
// those of the disk the firmware booted when site names none.
func newBootloader(cfg *config.Config, layout storage.Layout, embedded bool, site *rpiabSite, log *slog.Logger) (bootloader.Backend, error) {
	typ := bootloader.TypeAppEngine
	if v, ok := cfg.Get(config.PVBootloaderType); ok && (embedded || v.Level != config.LevelDefault) {
		typ = v.Value
	}
	if err := os.MkdirAll(layout.Boot(), 0o755); err != nil {
		return nil, fmt.Errorf("boot directory: %w", err)
	}
	if (typ == bootloader.TypeUboot || typ == bootloader.TypeUbootPVK) && cfg.Bool(config.PVBootloaderMTDOnly) {
		// Upstream keeps the variables in the MTD partition
		// PV_BOOTLOADER_MTD_ENV then, where U-Boot reads them; written
		// to uboot.txt instead, no update would ever be tried by the
		// bootloader and no rollback seen.
		return nil, fmt.Errorf("PV_BOOTLOADER_MTD_ONLY=1 is not supported by the %s backend: use PV_BOOTLOADER_TYPE=%s with an fw_env.config that names the MTD partition",
			typ, bootloader.TypeUbootEnv)
	}
	// In appengine mode a bootloader backend is only played: no
	// bootloader reads its files.
	o := bootloader.Options{BootDir: layout.Boot(), NoReader: !embedded}
	if typ == bootloader.TypeRPiAB && site != nil {
		if site.devs == nil {
			devs, err := bootloader.RPiABDevices(bootloader.DefaultBootModeProperty)
			if err != nil {
				return nil, fmt.Errorf("new %s bootloader: %w", typ, err)
			}
			site.devs = devs
		}
		r, err := site.place(log)
		if err != nil {
			return nil, fmt.Errorf("new %s bootloader: %w", typ, err)
		}
		r.Image = func(rev string) (bootloader.BootImage, error) {
			return updater.BootImage(layout, state.Options{}, rev)
		}
		o.RPiAB = r
	}
	return bootloader.New(typ, o)
}

// initPathEnv carries the container init's path across the supervisor's
// re-execution from a sealed copy of itself.
const initPathEnv = "_PV_INIT_PATH"

// openContainerInit opens the handle that makes every container's init
// the small pvinit binary rather than a copy of this one (driver.OpenInit).
// Without it containers still start, each at the cost of starting this
// whole program once more.
func openContainerInit(path, work string, log *slog.Logger) *driver.Init {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		log.Info("no container init beside pantavisor: containers start from pantavisor itself", "looked_for", path)
		return nil
	}
	ci, err := driver.OpenInit(path, filepath.Join(work, "init-lower"))
	if err != nil {
		log.Warn("container init not used: containers start from pantavisor itself", "err", err)
		return nil
	}
	if ci.OverlayErr != nil {
		log.Warn("container init copied into memory: overlayfs refused", "size_of", ci.Path, "err", ci.OverlayErr)
	}
	log.Info("container init", "path", ci.Path, "sealing", ci.Sealing)
	return ci
}

// workDir is the supervisor's tmpfs under the run directory: container
// mountpoints and libcontainer state.
func workDir(o appengineOpts) string { return filepath.Join(o.run, "work") }

// loadConfig builds the layered configuration: defaults, the config file,
// the environment; appengine mode is forced as upstream does.
func loadConfig(o appengineOpts, log *slog.Logger) *config.Config {
	cfg := config.New()
	if o.config != "" {
		data, err := os.ReadFile(o.config)
		if err != nil {
			log.Error("read config file; using defaults", "err", err)
		} else if rep, err := cfg.LoadFile(config.LevelPVConf, o.config, data); err != nil {
			log.Error("config file not applied", "err", err)
		} else {
			for _, w := range rep.Warnings {
				log.Warn("config", "warning", w)
			}
			for _, e := range rep.Refused {
				log.Warn("config refused", "err", e)
			}
		}
	}
	rep := cfg.LoadEnv(os.Environ())
	for _, e := range rep.Refused {
		log.Warn("config from environment refused", "err", e)
	}
	if _, err := cfg.SetArgs(config.PVSystemInitMode, "appengine"); err != nil {
		log.Warn("config", "err", err)
	}
	return cfg
}

// isolate makes every mount private to this namespace (nothing propagates
// back to the host, nor between containers), mounts a /proc that matches
// the new pid namespace (ownProc; embedded mode has the one PID 1 mounted),
// and brings the network namespace's loopback up.
func isolate(ownProc bool) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if ownProc {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount /proc: %w", err)
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// mountWork puts a tmpfs on the work directory: container mountpoints and
// libcontainer state live there, private to this mount namespace, and go
// away with it whatever happens. It can be traversed, not listed, by
// anyone: a container with lxc.idmap, whose root is an unprivileged id of
// the host, must reach its root filesystem below it, as LXC requires of
// its containers' path (libcontainer keeps its own state directory 0700).
func mountWork(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0711")
}

func unmountWork(dir string, log *slog.Logger) {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		log.Warn("unmount work tmpfs", "err", err)
	}
	_ = os.Remove(dir)
}

// iptablesBinary maps PV_NET_IPTABLES to the binary go-iptables runs.
func iptablesBinary(v string) string {
	switch v {
	case "nft":
		return nat.NFTBinary
	case "legacy":
		return nat.LegacyBinary
	}
	return nat.DefaultBinary
}
