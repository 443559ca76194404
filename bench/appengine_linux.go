package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pantavisor/pv/messages"
)

// pollEvery is how often the control socket is asked for the containers'
// status while waiting for them to start.
const pollEvery = 5 * time.Millisecond

// device is a running `pantavisor appengine`.
type device struct {
	storage, run string
	cmd          *exec.Cmd
	out          *tailBuffer
	client       *http.Client
	exited       chan struct{}
	exitErr      error
	t0           time.Time // when the process was started
}

// startDevice runs bin/pantavisor appengine on storage, with its control
// socket in run.
func startDevice(storage, run string) (*device, error) {
	d := &device{storage: storage, run: run, out: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	d.cmd = exec.Command(PantavisorBin, "appengine", "--storage", storage, "--run", run)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	sock := filepath.Join(run, "pv-ctrl")
	d.client = &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		}},
	}
	d.t0 = time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pantavisor: %w", err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	return d, nil
}

// containers asks GET /containers.
func (d *device) containers() ([]messages.ContainerInfo, error) {
	// The control socket only accepts Host "localhost" (or none), as
	// upstream's does.
	resp, err := d.client.Get("http://localhost/containers")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &refusedError{fmt.Sprintf("GET /containers: %s: %s", resp.Status, bytes.TrimSpace(body))}
	}
	var cs []messages.ContainerInfo
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("GET /containers: %w", err)
	}
	return cs, nil
}

// waitStarted polls the control socket until n containers are STARTED. A
// socket that does not answer yet is polled again; a container that fails
// ends the wait.
func (d *device) waitStarted(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last []messages.ContainerInfo
	var lastErr error
	var answered, first time.Duration
	for {
		cs, err := d.containers()
		if err == nil {
			if answered == 0 {
				answered = time.Since(d.t0)
			}
			last, lastErr = cs, nil
			started := 0
			for _, c := range cs {
				switch c.Status {
				case messages.StatusStarted:
					started++
				case messages.StatusFailed, messages.StatusStopped:
					return fmt.Errorf("container %s is %s (%s): %s", c.Name, c.Status, c.Error, d.out.String())
				}
			}
			if started > 0 && first == 0 {
				first = time.Since(d.t0)
			}
			if started == n && len(cs) == n {
				logf("device: control socket answered after %v, first STARTED after %v, all %d after %v",
					answered.Round(time.Millisecond), first.Round(time.Millisecond), n, time.Since(d.t0).Round(time.Millisecond))
				return nil
			}
		} else {
			var refused *refusedError
			if errors.As(err, &refused) {
				return err // an answer, not a socket that is not up yet
			}
			lastErr = err
		}
		select {
		case <-d.exited:
			return fmt.Errorf("pantavisor exited early: %v: %s", d.exitErr, d.out.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containers not STARTED after %v (last answer %v, error %v): %s", n, timeout, summary(last), lastErr, d.out.String())
		}
		time.Sleep(pollEvery)
	}
}

// bootSettle is the time given, after the boot report, to what the device
// does once its boot is over (it returns the boot's garbage to the kernel).
const bootSettle = 100 * time.Millisecond

// waitBooted polls GET /actors until root reports the revision booted,
// then lets the device settle.
func (d *device) waitBooted(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := d.client.Get("http://localhost/actors")
		if err == nil {
			var root messages.Node
			err = json.NewDecoder(resp.Body).Decode(&root)
			resp.Body.Close()
			if err == nil && root.Info["booted_in"] != "" {
				time.Sleep(bootSettle)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no boot report after %v (last error %v): %s", timeout, err, d.out.String())
		}
		time.Sleep(pollEvery)
	}
}

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

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if extra := t.b.Len() - t.max; extra > 0 {
		t.b.Next(extra)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
