package actors

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// fakeEngine records the order of operations; containers run until the test
// makes them exit. It stands in for the kernel only in these tests of the
// actors' own logic; the real engine has its integration tests.
type fakeEngine struct {
	recorder
	mu       sync.Mutex
	runs     map[string]*fakeRun
	failOn   map[string]string // container → "mount" or "start"
	startDly map[string]time.Duration
	// slowDestroy makes Destroy of these containers take a while.
	slowDestroy map[string]time.Duration
	// stuckStop makes Stop of these containers wait until the channel
	// closes, as a teardown stuck on the kernel (an unmount whose sync
	// waits on a dying disk) does.
	stuckStop map[string]chan struct{}
	// unkillable makes Stop of these containers fail as the driver's
	// does when SIGKILL does not end the init (uninterruptible sleep):
	// the run ends only once the channel closes.
	unkillable map[string]chan struct{}
	nextPid    int
	// mounted and alive count, per container, the mounts not yet
	// unmounted and the runs not yet destroyed, from the moment their
	// Mount or Start begins. The real engine mounts a container's rootfs
	// and makes its libcontainer state in places named after it, so a
	// second of either while the first lives would clash: overlaps
	// records each, for every test to check (startSystemCfg).
	mounted, alive map[string]int
	overlaps       []string
}

// overlap counts one more of what (mount or run) of name in n, and
// records an overlap if another is alive.
func (e *fakeEngine) overlap(n map[string]int, what, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n[name]++
	if n[name] > 1 {
		e.overlaps = append(e.overlaps, fmt.Sprintf("%s of %s begun with %d alive (after %v)", what, name, n[name]-1, e.Events()))
	}
}

// gone counts one less in n.
func (e *fakeEngine) gone(n map[string]int, name string) {
	e.mu.Lock()
	n[name]--
	e.mu.Unlock()
}

// Overlaps returns the overlaps recorded.
func (e *fakeEngine) Overlaps() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.overlaps...)
}

// holdStops makes the stops of name's container fail as those of a
// container whose processes survive SIGKILL, until the channel returned
// is closed (its processes end).
func (e *fakeEngine) holdStops(name string) chan struct{} {
	held := make(chan struct{})
	e.mu.Lock()
	e.unkillable[name] = held
	e.mu.Unlock()
	return held
}

// startedApp runs the revision of appState on a fresh fake engine, its
// containers STARTED.
func startedApp(t *testing.T) (*fakeEngine, *System) {
	t.Helper()
	e := newFakeEngine()
	sys := startSystemCfg(t, Config{Rev: "0", State: appState(t, "/sbin/init", "/bin/a", nil), Engine: e})
	waitStatus(t, sys, allStarted)
	return e, sys
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{runs: map[string]*fakeRun{}, failOn: map[string]string{}, startDly: map[string]time.Duration{},
		slowDestroy: map[string]time.Duration{}, stuckStop: map[string]chan struct{}{},
		unkillable: map[string]chan struct{}{}, nextPid: 100, mounted: map[string]int{}, alive: map[string]int{}}
}

// recorder keeps what a fake was asked, in order, for the test to read.
type recorder struct {
	recMu  sync.Mutex
	events []string
}

func (r *recorder) record(ev string) {
	r.recMu.Lock()
	r.events = append(r.events, ev)
	r.recMu.Unlock()
}

// Events returns what was recorded so far.
func (r *recorder) Events() []string {
	r.recMu.Lock()
	defer r.recMu.Unlock()
	return append([]string(nil), r.events...)
}

func (e *fakeEngine) run(name string) *fakeRun {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runs[name]
}

func (e *fakeEngine) Mount(c *state.Container) (Mount, error) {
	e.mu.Lock()
	fail := e.failOn[c.Name] == "mount"
	e.mu.Unlock()
	if fail {
		return nil, errors.New("mount squashfs: no such object")
	}
	e.overlap(e.mounted, "mount", c.Name)
	e.record("mount " + c.Name)
	return &fakeMount{e: e, name: c.Name}, nil
}

// Close records the release of the engine's images.
func (e *fakeEngine) Close() error { e.record("close engine"); return nil }

type fakeMount struct {
	e         *fakeEngine
	name      string
	unmounted sync.Once
	// gone and starting (under e.mu): Unmount was called; starts under
	// way in the mount. A start in a mount being unmounted is an overlap
	// too.
	gone     bool
	starting int
}

func (m *fakeMount) Start(lease *messages.Lease) (Run, error) {
	if lease != nil {
		m.e.record("lease " + m.name + " " + lease.Addr.String() + " " + lease.MAC)
	}
	m.e.mu.Lock()
	fail := m.e.failOn[m.name] == "start"
	dly := m.e.startDly[m.name]
	m.e.nextPid++
	pid := m.e.nextPid
	m.e.mu.Unlock()
	m.e.overlap(m.e.alive, "start", m.name)
	m.e.mu.Lock()
	if m.gone {
		m.e.overlaps = append(m.e.overlaps, fmt.Sprintf("start of %s in an unmounted mount (after %v)", m.name, m.e.Events()))
	}
	m.starting++
	m.e.mu.Unlock()
	defer func() {
		m.e.mu.Lock()
		m.starting--
		m.e.mu.Unlock()
	}()
	if dly > 0 {
		time.Sleep(dly)
	}
	if fail {
		m.e.gone(m.e.alive, m.name)
		return nil, errors.New("exec /sbin/init: no such file")
	}
	r := &fakeRun{pid: pid, exit: make(chan messages.Exit, 1), done: make(chan struct{}), e: m.e, name: m.name}
	m.e.mu.Lock()
	m.e.runs[m.name] = r
	m.e.mu.Unlock()
	m.e.record("start " + m.name)
	return r, nil
}

func (m *fakeMount) Unmount() error {
	m.e.mu.Lock()
	if m.starting > 0 {
		m.e.overlaps = append(m.e.overlaps, fmt.Sprintf("unmount of %s during a start in it (after %v)", m.name, m.e.Events()))
	}
	m.gone = true
	m.e.mu.Unlock()
	m.e.record("unmount " + m.name)
	m.unmounted.Do(func() { m.e.gone(m.e.mounted, m.name) })
	return nil
}

// Origin is "": a fake mount uses no revision directories.
func (m *fakeMount) Origin() string { return "" }

type fakeRun struct {
	e    *fakeEngine
	name string
	pid  int
	exit chan messages.Exit
	// done, when made, is closed by the exit, as the driver's Done.
	done      chan struct{}
	once      sync.Once
	destroyed sync.Once
}

// Done is closed once the run has exited (never for a run made without
// it).
func (r *fakeRun) Done() <-chan struct{} { return r.done }

func (r *fakeRun) Pid() int { return r.pid }
func (r *fakeRun) Wait() messages.Exit {
	ex := <-r.exit
	r.exit <- ex // later Waits see it too
	return ex
}
func (r *fakeRun) Exit(code, sig int) {
	r.once.Do(func() {
		r.exit <- messages.Exit{Code: code, Signal: sig, At: time.Now()}
		if r.done != nil {
			close(r.done)
		}
	})
}
func (r *fakeRun) Stop(time.Duration) error {
	r.e.record("stop " + r.name)
	r.e.mu.Lock()
	stuck := r.e.stuckStop[r.name]
	unkillable := r.e.unkillable[r.name]
	r.e.mu.Unlock()
	if stuck != nil {
		<-stuck
	}
	if unkillable != nil {
		go func() {
			<-unkillable
			r.Exit(137, 9)
		}()
		return errors.New("kill container " + r.name + ": container did not die after SIGKILL")
	}
	r.Exit(0, 15)
	return nil
}
func (r *fakeRun) Destroy() error {
	r.e.mu.Lock()
	d := r.e.slowDestroy[r.name]
	r.e.mu.Unlock()
	time.Sleep(d)
	r.e.record("destroy " + r.name)
	r.destroyed.Do(func() { r.e.gone(r.e.alive, r.name) })
	return nil
}

var _ Engine = (*fakeEngine)(nil)

func (e *fakeEngine) String() string { return fmt.Sprint(e.Events()) }
