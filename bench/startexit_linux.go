package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// startsPerRun is how many start→exit cycles of each side one run times;
// the run reports the medians.
const startsPerRun = 20

// minimalInitLines make this project's container the minimal one every
// side of the start→exit figures runs: /bin/true with new mount, pid and
// uts namespaces (upstream's template keeps user, net and ipc), /proc,
// /dev (tmpfs with the usual nodes, devpts, shm) and a cgroup.
var minimalInitLines = []string{
	"lxc.namespace.keep = user net ipc",
	"lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}

// startExitName is what the start→exit figures time of this project: a
// cycle of runtime/engine as the container actor drives it. The engine
// keeps the image's squashfs mounted between cycles (as it does between a
// container's stop and start), so the cycles after the warm-up one find
// the init's pages decompressed; the first start of an image is part of
// the cold-start figures.
const startExitName = "container start→exit of /bin/true (engine: Mount + Start + Wait + Destroy + Unmount)"

func init() {
	Register(Figure{
		Name:     startExitName,
		Baseline: "bare libcontainer Create+Run+Wait+Destroy, same process, root mounted once",
		Unit:     "ms",
		Goal:     1.2,
		Needs:    containerNeeds(),
		Run:      func() (float64, float64, error) { return startExit(&bareRuns, minimalEngine, bareLibcontainer, true) },
	})
	Register(Figure{
		Name:     startExitName,
		Baseline: "lxc-start -F, root mounted once",
		Unit:     "ms",
		Needs:    containerNeeds("exec:lxc-start"),
		Run: func() (float64, float64, error) {
			return startExit(&lxcFRuns, minimalEngine, func(f *fixture, root string) (func() (time.Duration, error), func() error, error) {
				// lxc-start -F returns when the container's init has
				// exited: one start→exit.
				l, err := newLXCBench(f, root, 1, []string{"/bin/true"}, minimalLXC)
				if err != nil {
					return nil, nil, err
				}
				once := func() (time.Duration, error) {
					cmd := exec.Command("lxc-start", append([]string{"-n", l.names[0], "-P", l.path, "-F", "--"}, l.args...)...)
					t0 := time.Now()
					out, err := cmd.CombinedOutput()
					el := time.Since(t0)
					if err != nil {
						return 0, fmt.Errorf("lxc-start -F: %w: %s", err, out)
					}
					return el, nil
				}
				return once, func() error { return l.cleanup(f.tag) }, nil
			}, true)
		},
	})
	Register(Figure{
		Name:     "container start→exit of /bin/true with lxc.seccomp.profile (a 40-rule denylist) and lxc.no_new_privs",
		Baseline: "the same container without them, same engine",
		Unit:     "ms",
		Goal:     1.1,
		Needs:    containerNeeds(),
		Run: func() (float64, float64, error) {
			filtered := benchCtr{name: "t", cmd: "/bin/true",
				lxc:   append(slices.Clone(minimalInitLines), "lxc.no_new_privs = 1", "lxc.seccomp.profile = deny.seccomp"),
				files: map[string][]byte{"deny.seccomp": []byte(benchDenylist)}}
			return startExit(&seccompRuns, engineSide("seccomp", filtered), minimalEngine, false)
		},
	})
}

// benchDenylist is a profile of the size device makers write: LXC's
// common.seccomp plus what a hardened app container usually denies.
const benchDenylist = `2
denylist
reject_force_umount
[all]
kexec_load errno 1
kexec_file_load errno 1
open_by_handle_at errno 1
init_module errno 1
finit_module errno 1
delete_module errno 1
keyctl errno 38
add_key errno 38
request_key errno 38
bpf errno 1
perf_event_open errno 1
userfaultfd errno 1
ptrace errno 1
process_vm_readv errno 1
process_vm_writev errno 1
kcmp errno 1
lookup_dcookie errno 1
mount errno 1
umount2 errno 1
pivot_root errno 1
swapon errno 1
swapoff errno 1
reboot errno 1
settimeofday errno 1
clock_settime errno 1
clock_adjtime errno 1
adjtimex errno 1
acct errno 1
quotactl errno 1
syslog errno 1
unshare errno 1
setns errno 1
name_to_handle_at errno 1
iopl errno 1
ioperm errno 1
personality errno 1 [0,0x0,!=]
vhangup errno 1
mknod errno 1 [1,0x6000,&=,0xf000]
mknodat errno 1 [2,0x6000,&=,0xf000]
`

// minimalEngine is this project's side of the start→exit figures: the
// minimal container, run by runtime/engine.
var minimalEngine = engineSide("engine", benchCtr{name: "t", cmd: "/bin/true", lxc: minimalInitLines})

// engineSide times start→exit cycles of the container c as runtime/engine
// runs it (engineStarter), in a storage of its own named name.
func engineSide(name string, c benchCtr) starter {
	return func(f *fixture, _ string) (func() (time.Duration, error), func() error, error) {
		e, cleanup, err := engineStarts(f, name, c)
		if err != nil {
			return nil, nil, err
		}
		return e.once, cleanup, nil
	}
}

// starter prepares a baseline on the fixture's root mounted once: once
// times one start→exit cycle, cleanup undoes what the cycles left.
type starter func(f *fixture, root string) (once func() (time.Duration, error), cleanup func() error, err error)

// Runs of each start→exit figure so far: they decide which side goes
// first.
var bareRuns, lxcFRuns, seccompRuns int

// startExit times startsPerRun start→exit cycles of ours, then as many of
// a baseline (or the other way round: the order alternates from run to
// run), each block after one warm-up cycle, and returns the medians in ms.
// Blocks, not alternating cycles: the kernel tears down part of an exited
// container in the background (loop device, mounts, namespaces), and that
// work would land in the other side's next cycle; interleaved, it doubled
// the baselines' times. A pause (settle) and the warm-up cycle of the
// second block absorb what the first leaves. Each side's cycles still pay
// for their own predecessors: so does a real restart. A baseline that is
// not this project (isolated) starts its inits without the pvinit handle.
func startExit(runs *int, ours, baseline starter, isolated bool) (o, b float64, err error) {
	f, err := newFixture()
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, f.close()) }()
	root, err := f.mountedOnce()
	if err != nil {
		return 0, 0, err
	}
	oOnce, oCleanup, err := ours(f, root)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, oCleanup()) }()
	bOnce, bCleanup, err := baseline(f, root)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, bCleanup()) }()
	var od, bd []time.Duration
	block := func(once func() (time.Duration, error), into *[]time.Duration) error {
		for i := 0; i <= startsPerRun; i++ {
			d, err := once()
			if err != nil {
				return err
			}
			if i > 0 {
				*into = append(*into, d)
			}
		}
		return nil
	}
	baseBlock := func() error { return block(bOnce, &bd) }
	if isolated {
		baseBlock = func() error { return withoutInit(func() error { return block(bOnce, &bd) }) }
	}
	if err := alternate(runs, func() error { return block(oOnce, &od) }, baseBlock); err != nil {
		return 0, 0, err
	}
	return medianMs(od), medianMs(bd), nil
}

// engineStarter runs one container of a revision the way the supervisor
// does, without the actors: runtime/engine mounts its root (the image's
// squashfs, kept mounted by the engine after the first cycle, then tmpfs
// and overlay) and creates, runs, waits for and destroys its libcontainer
// container through runtime/driver, then unmounts.
type engineStarter struct {
	eng   *engine.Engine
	c     *state.Container
	steps *phases
}

func engineStarts(f *fixture, name string, c benchCtr) (*engineStarter, func() error, error) {
	ef, err := newEngineFixture(f, name, []benchCtr{c})
	if err != nil {
		return nil, nil, err
	}
	e := &engineStarter{eng: ef.eng, c: ef.st.Containers[0],
		steps: newPhases(name, "mount", "create+run", "wait", "destroy", "unmount")}
	return e, func() error { e.steps.report(); return ef.cleanup() }, nil
}

// engineFixture is a revision of ctrs laid out in a storage of its own,
// loaded, with a driver and an engine as the supervisor makes them.
type engineFixture struct {
	eng          *engine.Engine
	st           *state.State
	cgroupParent string
}

func newEngineFixture(f *fixture, name string, ctrs []benchCtr) (*engineFixture, error) {
	storageDir := filepath.Join(f.dir, name, "storage")
	if err := buildStorage(storageDir, f.image, ctrs); err != nil {
		return nil, err
	}
	layout := storage.Layout{Root: storageDir}
	st, err := state.LoadTrail(layout.Trail("0"), state.Options{AppEngine: true})
	if err != nil {
		return nil, fmt.Errorf("load bench revision: %w", err)
	}
	cgroupParent := "pvbench-" + name + "-" + f.tag
	drv, err := driver.New(driver.Options{StateRoot: filepath.Join(f.dir, name, "libcontainer"), CgroupParent: cgroupParent})
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	return &engineFixture{
		eng: &engine.Engine{Layout: layout, Rev: "0", State: st, Driver: drv,
			WorkDir: filepath.Join(f.dir, name, "volumes"), Log: quietLog()},
		st: st, cgroupParent: cgroupParent,
	}, nil
}

// cleanup releases the images the engine kept mounted and checks that
// the driver removed its cgroup parent itself: anything left is a leak of
// the driver, reported as an error.
func (ef *engineFixture) cleanup() error {
	err := ef.eng.Close()
	if cg := cgroupDirs(ef.cgroupParent); len(cg) > 0 {
		return errors.Join(err, fmt.Errorf("cgroups left by the driver: %v", cg), removeCgroups(ef.cgroupParent))
	}
	return err
}

func (e *engineStarter) once() (_ time.Duration, err error) {
	p := e.steps.begin()
	m, err := e.eng.Mount(e.c)
	if err != nil {
		return 0, err
	}
	p.mark()
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Unmount())
		}
	}()
	r, err := m.Start(nil)
	if err != nil {
		return 0, err
	}
	p.mark()
	ex := r.Wait()
	p.mark()
	if err := r.Destroy(); err != nil {
		return 0, err
	}
	p.mark()
	if err := m.Unmount(); err != nil {
		return 0, err
	}
	el := p.mark()
	if ex.Code != 0 || ex.Signal != 0 {
		return 0, fmt.Errorf("/bin/true ended with %+v", ex)
	}
	p.done()
	return el, nil
}

// phases accumulates the time of each step of repeated cycles, for the
// breakdown -v prints.
type phases struct {
	what  string
	names []string
	sums  []time.Duration
	n     int
}

func newPhases(what string, names ...string) *phases {
	return &phases{what: what, names: names, sums: make([]time.Duration, len(names))}
}

// cycle is one timed cycle: mark ends a step and returns the time since
// the cycle began; done adds the cycle to the totals.
type cycle struct {
	p      *phases
	t0, at time.Time
	steps  []time.Duration
}

func (p *phases) begin() *cycle {
	now := time.Now()
	return &cycle{p: p, t0: now, at: now}
}

func (c *cycle) mark() time.Duration {
	now := time.Now()
	c.steps = append(c.steps, now.Sub(c.at))
	c.at = now
	return now.Sub(c.t0)
}

func (c *cycle) done() {
	for i, d := range c.steps {
		if i < len(c.p.sums) {
			c.p.sums[i] += d
		}
	}
	c.p.n++
}

// report logs the mean time of each step.
func (p *phases) report() {
	if p.n == 0 {
		return
	}
	var parts []string
	for i, name := range p.names {
		parts = append(parts, fmt.Sprintf("%s %v", name, (p.sums[i]/time.Duration(p.n)).Round(time.Microsecond)))
	}
	logf("%s start→exit, mean of %d: %s", p.what, p.n, strings.Join(parts, ", "))
}

// bareLibcontainer returns a start→exit cycle of libcontainer alone, with a
// hand-written minimal configuration equivalent to the container of
// minimalInitLines, on the fixture's root mounted once.
func bareLibcontainer(f *fixture, root string) (func() (time.Duration, error), func() error, error) {
	stateRoot := filepath.Join(f.dir, "bare", "libcontainer")
	if err := os.MkdirAll(stateRoot, 0o700); err != nil {
		return nil, nil, fmt.Errorf("bare libcontainer: %w", err)
	}
	cgroupParent := "pvbench-bare-" + f.tag
	id := "bare-" + f.tag
	steps := newPhases("bare libcontainer", "create", "run", "wait", "destroy")
	once := func() (time.Duration, error) {
		c := steps.begin()
		ct, err := libcontainer.Create(stateRoot, id, bareConfig(root, id, cgroupParent))
		if err != nil {
			return 0, fmt.Errorf("bare libcontainer: %w", err)
		}
		c.mark()
		p := &libcontainer.Process{
			Args: []string{"/bin/true"}, Cwd: "/", Init: true,
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		}
		if err := ct.Run(p); err != nil {
			return 0, errors.Join(fmt.Errorf("bare libcontainer: %w", err), ct.Destroy())
		}
		c.mark()
		ps, werr := p.Wait()
		c.mark()
		if err := ct.Destroy(); err != nil {
			return 0, fmt.Errorf("bare libcontainer: %w", err)
		}
		el := c.mark()
		if werr != nil {
			return 0, fmt.Errorf("bare libcontainer: %w", werr)
		}
		if !ps.Success() {
			return 0, fmt.Errorf("bare libcontainer: /bin/true ended with %v", ps)
		}
		c.done()
		return el, nil
	}
	// libcontainer removes the container's cgroup but not its parent.
	return once, func() error {
		steps.report()
		return removeCgroups(cgroupParent)
	}, nil
}

// bareConfig is the smallest configuration that does what the project's
// minimal container does: the same namespaces, mounts, device nodes and
// device rules, and a cgroup under a relative parent.
func bareConfig(root, id, cgroupParent string) *configs.Config {
	const noExecSuidDev = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	var nodes []*devices.Device
	rules := []*devices.Rule{{Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm", Allow: false}}
	for _, d := range specconv.AllowedDevices {
		rule := d.Rule
		rules = append(rules, &rule)
		if d.Path != "" {
			nodes = append(nodes, d)
		}
	}
	return &configs.Config{
		Rootfs:   root,
		Hostname: id,
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS}, {Type: configs.NEWUTS}, {Type: configs.NEWPID},
		},
		Devices: nodes,
		Cgroups: &cgroups.Cgroup{Name: id, Parent: cgroupParent, Resources: &cgroups.Resources{Devices: rules}},
		Mounts: []*configs.Mount{
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: noExecSuidDev},
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
			{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5"},
			{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: noExecSuidDev, Data: "mode=1777,size=65536k"},
		},
	}
}
