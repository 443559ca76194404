// Package writeback writes the page cache back to storage as a device
// stops, in a process of its own, so that a disk that stopped answering
// does not keep the supervisor from ending.
//
// A sync(2) whose writes never complete does not return, and the thread
// making it cannot be killed. Made by a thread of the supervisor, it
// would keep the whole process from finishing its exit (a process ends
// when its last thread does), and PID 1 waits for that exit before it
// reboots: a device with no watchdog, or one in its startup mode, would
// stay down until its power was cut. A child process makes it instead,
// left behind when it has not ended in time; PID 1's reboot does not wait
// for it.
package writeback

import (
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// childName is the child's argv[0]: the binary run again under it syncs
// and exits (init), before anything else of it starts.
const childName = "pantavisor-writeback"

func init() {
	if len(os.Args) == 1 && os.Args[0] == childName {
		unix.Sync()
		os.Exit(0)
	}
}

// Sync writes back every file system's dirty pages, as sync(2), and
// reports whether that ended within wait. When it has not, it goes on in
// the child, which nothing waits for once this process ends. Where no
// child can be started (a pids limit), a thread of this process makes it.
func Sync(wait time.Duration) bool {
	done := make(chan struct{})
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{childName}
	cmd.Env = []string{} // it syncs, nothing else
	if err := cmd.Start(); err != nil {
		go func() {
			defer close(done)
			unix.Sync()
		}()
	} else {
		go func() {
			defer close(done)
			_ = cmd.Wait() // sync(2) has no error to give
		}()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
