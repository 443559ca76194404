package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/blockdev"
	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/runtime/reaper"
	"github.com/pantavisor/pv/storage"
)

// Embedded mode: the device itself. The kernel starts pantavisor as its
// init (/init of the initramfs); the C stage (runtime/reaper) is PID 1,
// mounts /proc and runs `pantavisor embedded` as the supervisor, and
// powers off or reboots when the supervisor exits (reaper.ExitPoweroff,
// reaper.ExitReboot; anything else is a crash). The supervisor mounts
// what a system needs, reads the configuration from the device's boot
// sources, mounts the storage device and runs the revision as appengine
// mode does, without the namespaces appengine makes for itself.

// confFile is the device's pantavisor.config, as upstream places it.
const confFile = "/etc/pantavisor.config"

func embeddedCmd(args []string, stderr io.Writer) int {
	if !reaper.IsChild() || len(args) != 0 {
		fmt.Fprintln(stderr, "pantavisor: embedded mode is PID 1's: boot pantavisor as the kernel's init, or start `pantavisor embedded` as PID 1 of a pid namespace")
		return 2
	}
	console, _, _ := newLogger(stderr, "", slog.LevelInfo)
	// The tools pantavisor runs (iptables) are looked up in PATH, which
	// the kernel gives init short or not at all.
	os.Setenv("PATH", systemPath(os.Getenv("PATH")))
	if err := mountSystem(); err != nil {
		console.Error("mount system filesystems", "err", err)
		return 1
	}
	cfg, cmdline := loadBootConfig(console)
	loadModules(cmdline, console)
	mnt := cfg.String(config.PVStorageMntPoint)
	if err := mountStorage(cfg, console); err != nil {
		console.Error("storage", "err", err)
		return 1
	}
	run := cfg.String(config.PVSystemRunDir)
	code := supervise(appengineOpts{storage: mnt, run: run, embedded: true, cfg: cfg,
		bootedRev: bootedRev(cmdline, console)}, stderr)
	// Everything that wrote to storage has stopped: what is cached goes
	// to the disk before PID 1 reboots or powers off. A disk that does
	// not take it is left as it is: an unmount would wait on it as the
	// sync did, and PID 1's reboot does not wait for the sync left
	// behind.
	if !syncBounded(finalSyncWait, console) {
		return code
	}
	unmountRPiAB(run, console)
	if cfg.String(config.PVStorageDevice) != "" {
		unmountOrReadOnly(mnt, console)
	}
	return code
}

// finalSyncWait bounds the last write-back, once the supervisor has
// stopped everything: the one before the watchdog's last kick
// (stopSyncWait) has written most of it.
const finalSyncWait = 30 * time.Second

// unmountOrReadOnly unmounts what is mounted at path, or remounts it
// read-only when it is busy, so that nothing more is written to it.
func unmountOrReadOnly(path string, log *slog.Logger) {
	if err := unix.Unmount(path, 0); err != nil {
		log.Warn("unmount; remounting read-only", "path", path, "err", err)
		_ = unix.Mount("", path, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}
}

// systemMounts are what PID 1 of a device mounts, in order, unless a
// filesystem is there already (an earlier stage mounted it).
var systemMounts = []struct {
	target, fstype, data string
	flags                uintptr
}{
	{"/sys", "sysfs", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"/dev", "devtmpfs", "mode=0755", unix.MS_NOSUID},
	{"/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620", unix.MS_NOSUID | unix.MS_NOEXEC},
	{"/dev/shm", "tmpfs", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV},
	{"/run", "tmpfs", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV},
	{"/sys/fs/cgroup", "cgroup2", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
}

// mountSystem mounts systemMounts. cgroup v2 is what this supervisor
// runs containers with; a kernel without it is reported here, by name.
func mountSystem() error {
	mounted, err := mountPoints()
	if err != nil {
		return err
	}
	for _, m := range systemMounts {
		if _, ok := mounted[m.target]; ok {
			continue
		}
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("%s: %w", m.target, err)
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// mountPoints maps the mount points of this mount namespace to their
// filesystem types (for a point mounted over, the topmost, listed last).
func mountPoints() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "id parent dev root mountpoint opts [optional...] - fstype ..."
		line := sc.Text()
		fields := strings.Fields(line)
		_, after, ok := strings.Cut(line, " - ")
		if len(fields) > 4 && ok {
			out[fields[4]], _, _ = strings.Cut(after, " ")
		}
	}
	return out, sc.Err()
}

// loadBootConfig is the configuration of the device's boot sources:
// pantavisor.config, the policy it names, the kernel command line's pv_*
// and ph_* and the environment. What cannot be read is logged and left
// at its defaults: a device boots with a bad config file. It returns the
// kernel command line it read too, where bootedRev finds pv_rev=.
func loadBootConfig(log *slog.Logger) (cfg *config.Config, cmdline string) {
	cfg = config.New()
	conf, err := os.ReadFile(confFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Error("read config file; using defaults", "file", confFile, "err", err)
	}
	line, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		log.Error("read the kernel command line", "err", err)
	}
	cmdline = string(line)
	rep, err := cfg.LoadBoot(config.BootSources{Conf: conf, Cmdline: cmdline, Environ: os.Environ(),
		Policy: func(name string) ([]byte, error) {
			return os.ReadFile(filepath.Join(cfg.String(config.PVSystemEtcPantavisorDir), "policies", name+".config"))
		}})
	if err != nil {
		log.Error("configuration partly applied", "err", err)
	}
	for _, w := range rep.Warnings {
		log.Warn("config", "warning", w)
	}
	for _, e := range rep.Refused {
		log.Warn("config refused", "err", e)
	}
	// PID 1 mounted /proc (mountSystem too); upstream sets them here,
	// before anything else runs.
	applySysctls(procSys, rep.Sysctl, log)
	if _, err := cfg.SetArgs(config.PVSystemInitMode, "embedded"); err != nil {
		log.Warn("config", "err", err)
	}
	return cfg, cmdline
}

// bootedRev is the revision the boot script says it booted, pv_rev= on
// the kernel command line (read once, by loadBootConfig); "" when it says
// none (a kernel started without a Pantavisor boot script), or names one
// no revision can be called, which is logged: the bootloader's variables
// decide then.
func bootedRev(cmdline string, log *slog.Logger) string {
	rev, ok := config.CmdlineValue(cmdline, config.CmdlineRev)
	if !ok {
		return ""
	}
	if err := storage.CheckRev(rev); err != nil {
		log.Error("the kernel command line's pv_rev is no revision: the booted revision comes from the bootloader's variables", "err", err)
		return ""
	}
	return rev
}

// mountStorage mounts PV_STORAGE_DEVICE at PV_STORAGE_MNTPOINT, waiting
// up to PV_STORAGE_WAIT for the device to appear (a disk is probed after
// init starts). Without a device, storage must be a directory already.
func mountStorage(cfg *config.Config, log *slog.Logger) error {
	mnt, spec := cfg.String(config.PVStorageMntPoint), cfg.String(config.PVStorageDevice)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if spec == "" {
		return nil
	}
	if m, err := mountPoints(); err == nil && m[filepath.Clean(mnt)] != "" {
		// A supervisor started again by PID 1: the previous one mounted
		// it, and the running containers use it.
		log.Info("storage mounted already", "on", mnt)
		return nil
	}
	dev, unread, err := waitStorage(spec, cfg.Duration(config.PVStorageWait))
	if err != nil {
		return err
	}
	if dev != spec {
		log.Info("storage device found", "spec", spec, "device", dev)
	}
	if len(unread) > 0 {
		// One may carry the tag too, unseen: Resolve names the devices
		// it could not read, or not in full, and why (no answer, or an
		// I/O error, as a failing disk gives).
		log.Warn("storage: devices not read in full", "devices", strings.Join(unread, "; "))
	}
	fstype := cfg.String(config.PVStorageFSType)
	if err := unix.Mount(dev, mnt, fstype, unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, mnt, err)
	}
	log.Info("storage mounted", "device", dev, "fstype", fstype, "on", mnt)
	return nil
}

// waitStorage waits up to wait for the storage device spec names and
// returns its node. spec is a path or, as upstream's stock config has it,
// LABEL=x or UUID=x, or PARTUUID=x or PARTLABEL=x (blockdev.Resolve). A
// tag no device carries yet is waited for as a missing path is (USB
// storage is probed late); one that waiting cannot mend (two devices
// carry it, PARTUUID=…/PARTNROFF=) fails at once.
// unread names the devices that could not be read and why (a read did
// not return, or failed); when none carries the tag in time, the error
// names them.
func waitStorage(spec string, wait time.Duration) (dev string, unread []string, err error) {
	deadline := time.Now().Add(wait)
	for {
		dev, unread, err = blockdev.Resolve(spec)
		if err == nil {
			if _, err = os.Stat(dev); err == nil {
				return dev, unread, nil
			}
		} else if !errors.Is(err, blockdev.ErrNotFound) {
			return "", unread, fmt.Errorf("storage device: %w", err)
		}
		if time.Now().After(deadline) {
			return "", unread, fmt.Errorf("storage device %s did not appear within %v (PV_STORAGE_WAIT): %w", spec, wait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// onInitramfs reports whether / is the kernel's rootfs (an initramfs),
// where pivot_root(2) is refused.
func onInitramfs() bool {
	m, err := mountPoints()
	return err == nil && m["/"] == "rootfs"
}

// modulesLoadDir lists kernel modules to load at boot, one name per line
// in *.conf files (systemd's modules-load.d format: # comments): what the
// storage device and the containers need that the kernel does not load
// by itself (loop, squashfs, overlay, a disk driver).
const modulesLoadDir = "/etc/modules-load.d"

// loadModules loads the modules modulesLoadDir names, each after the
// modules it depends on (modules.dep of the running kernel). A module
// that is built in or loaded already is fine; one that fails is logged
// and the boot goes on: what needs it then fails with its own error. Each
// module, named or needed, gets the parameters the kernel command line
// sets for it (config.ModuleParams), as modprobe would give it.
func loadModules(cmdline string, log *slog.Logger) {
	confs, _ := filepath.Glob(filepath.Join(modulesLoadDir, "*.conf"))
	var want []string
	for _, c := range confs {
		data, err := os.ReadFile(c)
		if err != nil {
			log.Warn("modules list", "file", c, "err", err)
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ";") {
				want = append(want, l)
			}
		}
	}
	if len(want) == 0 {
		return
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
	deps, err := readModulesDep(filepath.Join(dir, "modules.dep"))
	if err != nil {
		log.Error("modules not loaded", "err", err)
		return
	}
	params := config.ModuleParams(cmdline)
	load := func(path string) error { return loadWithParams(path, params[moduleName(path)], finitModule, log) }
	loaded := map[string]bool{}
	for _, name := range want {
		if err := loadModule(dir, deps, name, loaded, 0, load); err != nil {
			log.Error("load module", "module", name, "err", err)
		}
	}
	attrs := []any{"modules", want}
	var given []string
	for name := range loaded {
		if p := params[name]; p != "" {
			given = append(given, name+": "+p)
		}
	}
	if len(given) > 0 {
		slices.Sort(given)
		attrs = append(attrs, "params", given)
	}
	log.Info("modules loaded", attrs...)
}

// readModulesDep maps each module name (dashes as underscores) to its
// path and its dependencies' paths, relative to the modules directory.
func readModulesDep(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(data), "\n") {
		mod, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		out[moduleName(mod)] = append([]string{mod}, strings.Fields(rest)...)
	}
	return out, nil
}

// moduleName is the name of a module file: "kernel/fs/squashfs/squashfs.ko"
// is squashfs; dashes and underscores are one.
func moduleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// loadModule loads name after its dependencies, with load (finitModule;
// tests pass their own), once: loaded holds what was done.
func loadModule(dir string, deps map[string][]string, name string, loaded map[string]bool, depth int, load func(string) error) error {
	name = moduleName(name)
	if loaded[name] {
		return nil
	}
	entry, ok := deps[name]
	if !ok {
		if builtinModule(dir, name) {
			return nil
		}
		return fmt.Errorf("not in modules.dep")
	}
	if depth > 32 {
		return fmt.Errorf("dependencies too deep")
	}
	loaded[name] = true
	// modules.dep lists every dependency, indirect ones too, nearest
	// last: load them from the end.
	for i := len(entry) - 1; i >= 1; i-- {
		if err := loadModule(dir, deps, entry[i], loaded, depth+1, load); err != nil {
			return fmt.Errorf("%s (for %s): %w", moduleName(entry[i]), name, err)
		}
	}
	return load(filepath.Join(dir, entry[0]))
}

// loadWithParams loads the module at path with params, and without them
// when the kernel refuses them (EINVAL: a value it cannot parse): a typo
// on the command line must not cost the device its disk driver or its
// watchdog. The refusal is logged with the parameters.
func loadWithParams(path, params string, load func(path, params string) error, log *slog.Logger) error {
	err := load(path, params)
	if err == nil || params == "" || !errors.Is(err, unix.EINVAL) {
		return err
	}
	log.Error("module refused its parameters from the kernel command line: loading it without them",
		"module", moduleName(path), "params", params, "err", err)
	return load(path, "")
}

// finitModule loads the module file at path with params (finit_module's
// "name=value ..."); one loaded already is fine, and keeps its parameters.
func finitModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// builtinModule reports whether modules.builtin names name.
func builtinModule(dir, name string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && moduleName(l) == name {
			return true
		}
	}
	return false
}

// logBootFigures logs, once the revision has booted, how long after the
// kernel handed over to /init that was, and the resident memory of PID 1
// and of this supervisor: the boot figures of a device.
func logBootFigures(log *slog.Logger) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return
	}
	now := time.Duration(ts.Nano())
	attrs := []any{"uptime", now.Round(time.Millisecond)}
	// PID 1 is the kernel's own thread long before it executes /init;
	// this supervisor is forked by /init first thing: its start is the
	// hand-over, to a few microseconds.
	if start, ok := processStart(os.Getpid()); ok {
		attrs = append(attrs, "since_init", (now - start).Round(time.Millisecond))
	}
	attrs = append(attrs, "rss_kib", residentKiB("self"), "pid1_rss_kib", residentKiB("1"))
	if g := reaper.Generation(); g > 0 {
		// Not a boot: a supervisor started again (since_init is then
		// since its own start, the re-adoption).
		log.Info("device re-adopted", append(attrs, "generation", g)...)
		return
	}
	log.Info("device booted", attrs...)
}

// processStart is when pid started, after the kernel booted (field 22 of
// /proc/<pid>/stat, in clock ticks: 100 per second on Linux).
func processStart(pid int) (time.Duration, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(ticks) * (time.Second / 100), true
}

// residentKiB is VmRSS of /proc/<who>/status, 0 when unknown.
func residentKiB(who string) int64 {
	data, err := os.ReadFile("/proc/" + who + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// systemPath is path with the system directories it lacks appended.
func systemPath(path string) string {
	have := map[string]bool{}
	var dirs []string
	for _, d := range filepath.SplitList(path) {
		if d != "" && !have[d] {
			have[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if !have[d] {
			dirs = append(dirs, d)
		}
	}
	return strings.Join(dirs, string(filepath.ListSeparator))
}

// logLevelDebug is upstream's DEBUG in PV_LOG_LEVEL (FATAL 0, ERROR 1,
// WARN 2, INFO 3, DEBUG 4, ALL 5).
const logLevelDebug = 4

// debugLogging says whether PV_LOG_LEVEL asks for debug logs.
func debugLogging(cfg *config.Config) bool { return cfg.Int(config.PVLogLevel) >= logLevelDebug }
