package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pantavisor/pv/messages"
)

// device is a running `pantavisor appengine`.
type device struct {
	storage, run string
	cmd          *exec.Cmd
	out          *tailBuffer
	client       *http.Client
	exited       chan struct{}
	booted       <-chan time.Time // when the boot report was logged
	missed       <-chan time.Time // a boot report naming missed goals
	exitErr      error
	t0           time.Time // when the process was started
}

// startDevice runs bin/pantavisor appengine on storage, with its control
// socket in run.
func startDevice(storage, run string) (*device, error) {
	d := &device{storage: storage, run: run, out: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	d.booted, d.missed = d.out.watch(bootLine), d.out.watch(missedLine)
	d.cmd = exec.Command(PantavisorBin, "appengine", "--storage", storage, "--run", run)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	sock := filepath.Join(run, "pv-ctrl")
	d.client = unixClient(sock)
	d.client.Timeout = 2 * time.Second
	d.t0 = time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pantavisor: %w", err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	return d, nil
}

// containers asks GET /containers.
func (d *device) containers() ([]messages.ContainerInfo, error) {
	body, err := getContainers(d.client)
	if err != nil {
		return nil, err
	}
	var cs []messages.ContainerInfo
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("GET /containers: %w", err)
	}
	return cs, nil
}

// bootLine is what the device logs when every container of its revision
// reached its goal; missedLine when the boot ended with some that timed
// out or gave up instead (actors/root.go).
const (
	bootLine   = `msg="revision booted" `
	missedLine = `msg="revision booted without reaching every goal"`
)

// waitStarted waits until the device reports its revision booted, then
// checks with one GET /containers that n containers are there and STARTED,
// and returns when the report came, from the process start.
//
// The wait does not poll the control socket: on two cores busy with the
// starts, a poll every few milliseconds (an HTTP request, a JSON answer
// of every container and its decoding) takes a share of the CPU the boot
// needs, which the baselines, timed by their own commands' exits, do not
// pay. The boot report is logged by root as soon as the revision's table
// shows every goal reached, the table GET /containers answers from.
func (d *device) waitStarted(n int, timeout time.Duration) (time.Duration, error) {
	var at time.Time
	select {
	case at = <-d.booted:
	case <-d.missed:
		return 0, fmt.Errorf("the boot ended with containers short of STARTED: %s", d.out.String())
	case <-d.exited:
		return 0, fmt.Errorf("pantavisor exited before its boot report: %v: %s", d.exitErr, d.out.String())
	case <-time.After(timeout):
		return 0, fmt.Errorf("no boot report after %v: %s", timeout, d.out.String())
	}
	el := at.Sub(d.t0)
	cs, err := d.containers()
	if err != nil {
		return 0, fmt.Errorf("after the boot report: %w", err)
	}
	started := 0
	for _, c := range cs {
		if c.Status == messages.StatusStarted {
			started++
		}
	}
	if started != n || len(cs) != n {
		return 0, fmt.Errorf("boot reported with %d of %d containers STARTED (%v): %s", started, n, summary(cs), d.out.String())
	}
	logf("device: boot reported after %v", el.Round(time.Millisecond))
	return el, nil
}

// bootSettle is the time given, after the boot report, to what the device
// does once its boot is over (it returns the boot's garbage to the kernel).
const bootSettle = 100 * time.Millisecond

func summary(cs []messages.ContainerInfo) string {
	count := map[messages.Status]int{}
	for _, c := range cs {
		count[c.Status]++
	}
	return fmt.Sprint(count)
}

// stop sends SIGTERM and waits for a clean exit, then checks that nothing
// of the device is left: mounts, cgroups, processes.
func (d *device) stop(timeout time.Duration) error {
	d.client.CloseIdleConnections()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(timeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("pantavisor did not stop within %v: %s", timeout, d.out.String())
	}
	if d.exitErr != nil {
		return fmt.Errorf("pantavisor exit: %w: %s", d.exitErr, d.out.String())
	}
	// Every process of the device was waited for by its parent, up to
	// this one: its children's usage is the device's, containers included.
	if ps := d.cmd.ProcessState; ps != nil {
		logf("device CPU from start to exit, containers included: user %v, sys %v",
			ps.UserTime().Round(time.Millisecond), ps.SystemTime().Round(time.Millisecond))
	}
	return nil
}

// kill ends a device that is in an unknown state (error paths).
func (d *device) kill() {
	select {
	case <-d.exited:
		return
	default:
	}
	if err := d.stop(30 * time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "pvbench: %v\n", err)
	}
}

// namespacePids returns the device's PID 1 (the reaper, the only child of
// the host-side process) and the reaper's children (the supervisor).
func (d *device) namespacePids() (reaper int, supervisors []int, err error) {
	kids := childrenOf(d.cmd.Process.Pid)
	if len(kids) != 1 {
		return 0, nil, fmt.Errorf("want one child of the appengine host process, got %v", kids)
	}
	reaper = kids[0]
	supervisors = childrenOf(reaper)
	if len(supervisors) == 0 {
		return 0, nil, errors.New("the appengine reaper has no child")
	}
	return reaper, supervisors, nil
}

// childrenOf lists the children of pid, from /proc/<pid>/task/*/children.
func childrenOf(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// status reads fields (in kB) of /proc/<pid>/status.
func status(pid int, fields ...string) (map[string]int, error) {
	return procFields(fmt.Sprintf("/proc/%d/status", pid), fields)
}

// smapsRollup reads fields (in kB) of /proc/<pid>/smaps_rollup.
func smapsRollup(pid int, fields ...string) (map[string]int, error) {
	return procFields(fmt.Sprintf("/proc/%d/smaps_rollup", pid), fields)
}

// procFields reads "Key: value kB" lines of a /proc file.
func procFields(path string, fields []string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range fields {
			if k == f {
				n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				if err != nil {
					return nil, fmt.Errorf("read %s %s: %w", path, k, err)
				}
				out[k] = n
			}
		}
	}
	for _, f := range fields {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("read %s: no %s", path, f)
		}
	}
	return out, nil
}

// refusedError is an HTTP answer other than 200 from the control socket.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// tailBuffer keeps the last max bytes written to it, for error messages,
// and tells watchers when a line holding their text is written.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	b       bytes.Buffer
	line    []byte // the start of a line whose end is not written yet
	watches []lineWatch
}

type lineWatch struct {
	text string
	c    chan time.Time
}

// watch returns a channel that receives the time of the first write that
// completes a line holding text.
func (t *tailBuffer) watch(text string) <-chan time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := make(chan time.Time, 1)
	t.watches = append(t.watches, lineWatch{text, c})
	return c
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if extra := t.b.Len() - t.max; extra > 0 {
		t.b.Next(extra)
	}
	if len(t.watches) > 0 {
		t.line = append(t.line, p...)
		for {
			i := bytes.IndexByte(t.line, '\n')
			if i < 0 {
				break
			}
			t.match(t.line[:i], now)
			t.line = t.line[i+1:]
		}
		if len(t.line) > t.max {
			t.line = t.line[len(t.line)-t.max:]
		}
		t.line = append([]byte(nil), t.line...)
	}
	return len(p), nil
}

// match fires and drops the watches whose text is in line.
func (t *tailBuffer) match(line []byte, now time.Time) {
	t.watches = slices.DeleteFunc(t.watches, func(w lineWatch) bool {
		if !bytes.Contains(line, []byte(w.text)) {
			return false
		}
		w.c <- now
		return true
	})
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
