//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/reaper"
)

// statusLine reads a field of /proc/<pid>/status; false when the process
// or the field is not there.
func statusLine(pid int, key string) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// statusField is statusLine for a process that must be there.
func statusField(t *testing.T, pid int, key string) string {
	t.Helper()
	v, ok := statusLine(pid, key)
	if !ok {
		t.Fatalf("no %s in /proc/%d/status", key, pid)
	}
	return v
}

// threads is the number of threads of pid.
func threads(t *testing.T, pid int) int {
	t.Helper()
	n, err := strconv.Atoi(statusField(t, pid, "Threads"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The appengine host stage is the C one (no Go runtime: one thread, where
// a Go program has several), Ctrl-C (SIGINT) goes through it to the device,
// which stops cleanly; with reaper.GoHostEnv the Go stage does the same.
func TestHostStages(t *testing.T) {
	isolated.Require(t)
	for _, c := range []struct {
		name string
		env  []string
		sig  syscall.Signal
		goRT bool
	}{
		{"C stage with SIGINT", nil, syscall.SIGINT, false},
		{"Go stage with SIGTERM", []string{reaper.GoHostEnv + "=1"}, syscall.SIGTERM, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A storage each: a console log of an earlier run would
			// say "up" before this run's container has its trap.
			storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{{name: "a", group: "app", cmd: sleeper}})
			d := startDeviceEnv(t, storage, c.env)
			d.waitContainers("a started", 20*time.Second, statusIs(messages.StatusStarted, "a"))
			d.waitConsole("a", "up", 10*time.Second)
			if n := threads(t, d.cmd.Process.Pid); (n > 1) != c.goRT {
				t.Errorf("host stage has %d threads: Go runtime %v, want %v", n, n > 1, c.goRT)
			}
			pid1 := nsInit(t, d)
			if nspid := nsPids(t, pid1); len(nspid) != 2 || nspid[1] != 1 {
				t.Errorf("the host stage's child is not PID 1 of a new pid namespace: NSpid %v", nspid)
			}
			_ = d.cmd.Process.Signal(c.sig)
			if code := d.waitExit(60 * time.Second); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			if !strings.Contains(d.console("a"), "stopped-by-term") {
				t.Errorf("a was not stopped by SIGTERM: %q", d.console("a"))
			}
			if !strings.Contains(d.log(), "pantavisor stopped") {
				t.Errorf("the device did not stop in order:\n%s", d.log())
			}
			// The marker is the host stage's: the device, whose
			// configuration takes PV_* variables, never sees it.
			if strings.Contains(d.log(), reaper.GoHostEnv) {
				t.Errorf("the device saw %s:\n%s", reaper.GoHostEnv, d.log())
			}
		})
	}
}

// nsPids is NSpid of pid: its pid in each pid namespace, outermost first.
func nsPids(t *testing.T, pid int) []int {
	t.Helper()
	var out []int
	for _, f := range strings.Fields(statusField(t, pid, "NSpid")) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// Bad arguments are reported as before, whichever stage runs: the C stage
// leaves them to the supervisor, which checks the same things.
func TestHostStageBadArguments(t *testing.T) {
	isolated.Require(t)
	empty := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--storage", filepath.Join(empty, "none")}, 2, "is not a directory"},
		{[]string{"--storage", empty, "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"--help"}, 2, "-storage string"},
	} {
		for _, env := range [][]string{nil, {reaper.GoHostEnv + "=1"}} {
			cmd := exec.Command(filepath.Join(bin, "pantavisor"), append([]string{"appengine"}, c.args...)...)
			cmd.Env = append(os.Environ(), env...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(string(out), c.want) {
				t.Errorf("appengine %v (env %v): exit %d, output %q; want %d and %q", c.args, env, code, out, c.code, c.want)
			}
		}
	}
}

// A signal during the pause before a reboot's new start ends the device
// there: the C stage says so and exits 0 without starting it again.
func TestSignalDuringRebootPause(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "core", "restart_policy": "system"}}, []ctr{
		{name: "sys", group: "core", cmd: `/bin/sh "-c" "exit 1"`,
			run: map[string]any{"auto_recovery": map[string]any{"policy": "no"}}},
	})
	commitAs(t, storage, "1")
	d := startDevice(t, storage)
	d.waitOutput("reboot requested: starting again in 1 s", 30*time.Second)
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.waitExit(10 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if !strings.Contains(d.output(), "pantavisor: terminated during reboot: not starting again") {
		t.Errorf("no message for the signal during the pause:\n%s", d.output())
	}
	if n := strings.Count(d.log(), "pantavisor starting"); n != 1 {
		t.Errorf("%d boots, want 1", n)
	}
}
