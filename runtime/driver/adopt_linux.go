package driver

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// ErrNotAdoptable is returned by Adopt for a container that a previous
// supervisor left in a state no supervisor can take over: created but
// never executed (its init waits for an exec that will not come), paused,
// or its state unreadable. The caller destroys it and starts afresh.
var ErrNotAdoptable = errors.New("container cannot be re-adopted")

// ExitSource tells how a process that is not this one's child ended: PID
// 1 reaped it (runtime/reaper's Exits). The process is named by its pid
// and its start time (field 22 of /proc/<pid>/stat), as a pid alone may
// have been another process's first; a start time of 0 (unknown) gets no
// status.
type ExitSource interface {
	Wait(pid int, start uint64, timeout time.Duration) (syscall.WaitStatus, bool)
}

// exitRecordWait bounds how long an adopted container's watch waits for
// PID 1's record once the init is gone: PID 1 reaps it at once, and the
// record follows through a local socket.
const exitRecordWait = 2 * time.Second

// Adopt takes over the container a previous supervisor of this device
// created under name and left behind when it died: its libcontainer state
// is loaded, and its init, now PID 1's child, is watched through a pidfd;
// how it ended comes from exits. An init that ended already (during the
// gap between the two supervisors) is adopted too: Done is closed at once
// or as soon as its record comes, and Wait returns its status, so the
// caller's recovery sees the exact code.
//
// Nothing of the container is touched: its processes keep their pids,
// their namespaces and their console.
func (d *Driver) Adopt(name string, exits ExitSource) (*Container, error) {
	lc, err := libcontainer.Load(d.stateRoot, name)
	if err != nil {
		return nil, fmt.Errorf("adopt container %s: %w", name, err)
	}
	st, err := lc.State()
	if err != nil {
		return nil, fmt.Errorf("adopt container %s: %w: %w", name, ErrNotAdoptable, err)
	}
	cfg := lc.Config()
	c := &Container{d: d, name: name, lc: lc, tr: &Translated{Config: &cfg}, started: true,
		adoptedPid: st.InitProcessPid, adoptedStart: st.InitProcessStartTime, created: startedAt(st.InitProcessStartTime, st.Created), paths: st.CgroupPaths, done: make(chan struct{})}
	d.noteParents(c.paths)
	// A supervisor from before the containers' task limit left it unset.
	d.limitParentOrLog(c.paths)
	// The pidfd first, the state check after: if the init still runs
	// once the pidfd is open, the pidfd is the init's (its start time is
	// what libcontainer compares), not a process that reused its pid.
	pidfd, perr := unix.PidfdOpen(c.adoptedPid, unix.PIDFD_NONBLOCK)
	status, err := lc.Status()
	if err != nil {
		if perr == nil {
			unix.Close(pidfd)
		}
		return nil, fmt.Errorf("adopt container %s: %w: %w", name, ErrNotAdoptable, err)
	}
	switch {
	case status == libcontainer.Running && perr == nil:
		go c.waitAdopted(pidfd, exits)
	case status == libcontainer.Stopped:
		if perr == nil {
			unix.Close(pidfd)
		}
		go c.waitAdopted(-1, exits)
	default:
		// Returned with its error so that the caller can kill and
		// destroy it; the watch tells when the kill is done.
		if perr == nil {
			go c.waitAdopted(pidfd, exits)
		} else {
			go c.waitAdopted(-1, nil)
		}
		return c, fmt.Errorf("adopt container %s (%s): %w", name, status, ErrNotAdoptable)
	}
	return c, nil
}

// waitAdopted is waitInit for an adopted init: the pidfd says when it is
// gone (through the runtime's poller, no thread blocked), PID 1 says how.
func (c *Container) waitAdopted(pidfd int, exits ExitSource) {
	defer close(c.done)
	defer func() {
		if r := recover(); r != nil {
			c.waitErr = fmt.Errorf("wait container %s: panic: %v\n%s", c.name, r, debug.Stack())
		}
	}()
	if pidfd >= 0 {
		f := os.NewFile(uintptr(pidfd), "pidfd")
		err := awaitPidfd(f)
		f.Close()
		if err != nil {
			c.waitErr = fmt.Errorf("wait container %s: %w", c.name, err)
			return
		}
	}
	at := time.Now()
	if exits != nil {
		if ws, ok := exits.Wait(c.adoptedPid, c.adoptedStart, exitRecordWait); ok {
			c.exit = exitFromStatus(ws, at)
			return
		}
	}
	c.waitErr = fmt.Errorf("wait container %s: init %d ended with no exit status from PID 1", c.name, c.adoptedPid)
}

// awaitPidfd blocks until the process of a non-blocking pidfd has exited.
func awaitPidfd(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			perr = err
			return true
		}
		return n > 0
	})
	if err == nil {
		err = perr
	}
	return err
}

// Created is when an adopted container was started by the previous
// supervisor; zero for one started here. It carries a monotonic reading
// (see startedAt): durations measured from it hold across clock steps.
func (c *Container) Created() time.Time { return c.created }

// startedAt is when an adopted init started: time.Now less its age, the
// kernel's count since boot (CLOCK_BOOTTIME) less its start time (field
// 22 of /proc/<pid>/stat, in clock ticks), which no wall-clock step
// changes. Taken from time.Now, it keeps the monotonic reading, so the
// run's length measured from it (what the recovery policy's reset window
// compares) and the uptime are right. libcontainer's Created, a wall time,
// is only the fallback for an unknown start: a board without an RTC
// battery creates its containers at 1970's or its build date's time and
// NTP steps the clock by decades afterwards, or back. A long run measured
// as negative kept its retries: a system container that had used its
// max_retries long before was given up at its next exit, and the device
// rebooted.
func startedAt(ticks uint64, created time.Time) time.Time {
	var ts unix.Timespec
	if ticks == 0 || unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return created
	}
	now := time.Now()
	// Ticks are USER_HZ, 100 a second on Linux; in that unit, an uptime
	// of centuries fits a Duration.
	age := time.Duration(ts.Nano()) - time.Duration(ticks)*(time.Second/userHZ)
	if age < 0 {
		return created // not a start time of this boot's
	}
	return now.Add(-age)
}

// userHZ is the unit of /proc/<pid>/stat's times.
const userHZ = 100
