//go:build integration

package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// The soak case of the reliability suite: for soakFor (90 s in the short
// profile), random faults and commands against one device — a container's
// init SIGKILLed, a container's whole cgroup killed (cgroup.kill), a stop
// and start through the API, an update of an app container — each
// followed by the check that the device is whole again. The supervisor's
// RSS, goroutines and open descriptors are sampled every 10 s, when the
// device is settled; between the end of the warm-up and the end,
// goroutines and descriptors must not grow, and RSS (full profile) by less
// than 5 %.

const (
	soakFull, soakShort     = 30 * time.Minute, 90 * time.Second
	warmFull, warmShort     = 5 * time.Minute, 30 * time.Second
	soakSample              = 10 * time.Second
	envSoakSeed             = "PV_SOAK_SEED"
	soakRSSGrowthPercentMax = 5.0
)

// soakCtrs is the soak's revision; word changes b's output per update. a
// and b come back from any death after a second, for as long as the soak
// lasts.
func soakCtrs(word string) []ctr {
	recover := map[string]any{"auto_recovery": map[string]any{
		"policy": "always", "max_retries": 100000, "retry_delay": 1, "backoff_factor": 1}}
	return []ctr{
		{name: "sys", group: "core", cmd: echoer("sys-0")},
		{name: "a", group: "app", cmd: echoer("a-up"), run: recover},
		{name: "b", group: "app", cmd: echoer(word), run: recover},
	}
}

// sample is the supervisor's footprint at one instant.
type sample struct {
	at                  time.Duration
	rss                 int64 // KiB
	goroutines, fds     int
	supervisor          int
	containersRestarted int
}

func TestReliabilitySoak(t *testing.T) {
	isolated.Require(t)
	soakFor, warm := soakFull, warmFull
	if profile(t) == "short" {
		soakFor, warm = soakShort, warmShort
	}
	rng := seeded(t, envSoakSeed)

	var done, passed int
	actions := map[string]int{}
	var samples []sample
	var verdict string
	record(t, fmt.Sprintf("soak %v: kills, cgroup kills, API stop/start, updates", soakFor), &done, &passed, func() string {
		return fmt.Sprintf("%s; %s", verdict, countList(actions))
	})

	dir := buildStorage(t, updateGroups(), soakCtrs("b-0"))
	d := startDeviceEnv(t, dir, commitDelay)
	d.waitUp("soak start", 60*time.Second)
	sup := supervisor(d)
	if sup == 0 {
		t.Fatal("no supervisor process")
	}
	start := time.Now()
	next := start
	for i := 1; time.Since(start) < soakFor; i++ {
		if time.Now().After(next) {
			s := d.footprint(sup)
			s.at = time.Since(start)
			samples = append(samples, s)
			t.Logf("%v: RSS %d KiB, %d goroutines, %d fds", s.at.Round(time.Second), s.rss, s.goroutines, s.fds)
			next = next.Add(soakSample)
		}
		done++
		what := soakStep(t, d, rng, i)
		actions[what]++
		d.waitUp(fmt.Sprintf("soak step %d (%s)", i, what), 60*time.Second)
		if s := supervisor(d); s != sup {
			t.Fatalf("soak step %d (%s): the supervisor changed from %d to %d", i, what, sup, s)
		}
		passed++
	}
	// ref: the samples from the end of the warm-up on, taken while the
	// faults go on; end: three samples once they are over and every
	// container is up again. A sample's goroutine count swings by a few
	// with what is under way as it is read (a container's start and
	// watchers coming or going, the /metrics request's own connection):
	// 19 to 23 over ten minutes with no trend, and a goroutine dump at
	// the end showing only the three containers' own. So the reference
	// is the most over every sample after the warm-up, and the end is
	// read settled: taken among the faults, as before, the end could
	// all fall high while the reference all fell low (CI on 4df0daa:
	// 20 → 22, no leak). A leak, which grows with the faults, still
	// leaves the settled end above all of them.
	var ref, end []sample
	for _, s := range samples {
		if s.at >= warm {
			ref = append(ref, s)
		}
	}
	d.waitUp("soak end", 60*time.Second)
	time.Sleep(3 * time.Second)
	for range 3 {
		s := d.footprint(sup)
		s.at = time.Since(start)
		t.Logf("%v (settled): RSS %d KiB, %d goroutines, %d fds", s.at.Round(time.Second), s.rss, s.goroutines, s.fds)
		end = append(end, s)
		time.Sleep(time.Second)
	}
	if len(ref) < 3 {
		t.Fatalf("too few samples after the %v warm-up: %d in all", warm, len(samples))
	}
	rss0, rss1 := medianOf(ref[:3], func(s sample) int64 { return s.rss }), medianOf(end, func(s sample) int64 { return s.rss })
	growth := 100 * float64(rss1-rss0) / float64(rss0)
	// Noise is tolerated one way only: the least of the last samples
	// against the most of the first ones.
	g0, g1 := maxOf(ref, func(s sample) int { return s.goroutines }), minOf(end, func(s sample) int { return s.goroutines })
	f0, f1 := maxOf(ref, func(s sample) int { return s.fds }), minOf(end, func(s sample) int { return s.fds })
	verdict = fmt.Sprintf("RSS %d→%d KiB (%+.1f%%), goroutines %d→%d, fds %d→%d", rss0, rss1, growth, g0, g1, f0, f1)
	t.Log(verdict)
	// RSS is judged after the full profile's 5 minutes only: in the
	// short one the heap is still finding its size (seen: +7% between
	// 45 s and 2 min, flat after), which says nothing of a leak.
	// Goroutines and descriptors have no such warm-up: the short profile
	// samples them from 30 s on.
	if growth >= soakRSSGrowthPercentMax && soakFor == soakFull {
		t.Errorf("RSS grew %.1f%% after the warm-up (limit %.0f%%)", growth, soakRSSGrowthPercentMax)
	}
	if g1 > g0 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
		// What they are: the Go runtime dumps every goroutine's stack
		// to stderr (the device output this test logs) on SIGQUIT.
		_ = syscall.Kill(sup, syscall.SIGQUIT)
		d.waitExit(10 * time.Second)
		return
	}
	if f1 > f0 {
		t.Errorf("open descriptors grew from %d to %d", f0, f1)
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Errorf("stop: exit code %d", code)
	}
	if err := (storage.Layout{Root: dir}).Check(); err != nil {
		t.Errorf("storage after the soak: %v", err)
	}
}

// soakStep does one random thing to d and returns its name; the caller
// checks that the device is whole again.
func soakStep(t *testing.T, d *device, rng *rand.Rand, i int) string {
	t.Helper()
	name := []string{"a", "b"}[rng.IntN(2)]
	switch r := rng.IntN(10); {
	case r < 4:
		m := d.waitUp("before a kill", 60*time.Second)
		pid := hostPid(t, nsInit(t, d), m[name].Pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s: %v", name, err)
		}
		d.waitRestarted(name, m[name].Pid)
		return "init SIGKILL"
	case r < 7:
		m := d.waitUp("before a cgroup kill", 60*time.Second)
		pid := hostPid(t, nsInit(t, d), m[name].Pid)
		killCgroup(t, pid)
		d.waitRestarted(name, m[name].Pid)
		return "whole cgroup killed"
	case r < 9:
		if out, code := d.pvcontrol("containers", "stop", name); code != 0 {
			t.Fatalf("containers stop %s: %d %s", name, code, out)
		}
		d.waitContainers(name+" stopped", 30*time.Second, statusIs(messages.StatusStopped, name))
		if out, code := d.pvcontrol("containers", "start", name); code != 0 {
			t.Fatalf("containers start %s: %d %s", name, code, out)
		}
		return "API stop+start"
	default:
		rev := fmt.Sprintf("soak%d", i)
		d.upload(buildStorage(t, updateGroups(), soakCtrs("b-"+rev)), rev)
		if out, code := d.pvcontrol("cmd", "run", "locals/"+rev); code != 0 {
			t.Fatalf("cmd run %s: %d %s", rev, code, out)
		}
		// A non-reboot update ends UPDATED: committed at the next boot,
		// as upstream does.
		p, seen := d.waitProgressFor("locals/"+rev, "UPDATED", 90*time.Second, func(s storage.Status) bool {
			return s == storage.StatusUpdated || s == storage.StatusDone || s.Failed()
		})
		if p.Status != storage.StatusUpdated && p.Status != storage.StatusDone {
			t.Fatalf("update %s: %+v after %v", rev, p, seen)
		}
		return "update"
	}
}

// waitRestarted waits until name runs again with a pid other than old.
func (d *device) waitRestarted(name string, old int) {
	d.t.Helper()
	d.waitContainers(name+" restarted", 30*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m[name].Status == messages.StatusStarted && m[name].Pid != old && m[name].Pid != 0
	})
}

// killCgroup kills every process of pid's cgroup at once: cgroup.kill
// where the cgroup v2 hierarchy has pid (the kernel does it atomically);
// on a v1-only host, the freezer cgroup frozen, each of its processes
// SIGKILLed, then thawed, so that none forks away in between.
func killCgroup(t *testing.T, pid int) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// Mount points of the hierarchies: cgroup2, and v1's by controller.
	points := map[string]string{}
	for _, l := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(l)
		_, after, ok := strings.Cut(l, " - ")
		if len(f) < 5 || !ok {
			continue
		}
		a := strings.Fields(after)
		switch {
		case len(a) > 0 && a[0] == "cgroup2":
			points[""] = f[4]
		case len(a) > 2 && a[0] == "cgroup":
			for _, o := range strings.Split(a[2], ",") {
				points[o] = f[4]
			}
		}
	}
	paths := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 {
			paths[parts[1]] = parts[2]
		}
	}
	if root, ok := points[""]; ok && paths[""] != "" && paths[""] != "/" {
		kill := filepath.Join(root, paths[""], "cgroup.kill")
		if err := os.WriteFile(kill, []byte("1"), 0); err == nil {
			return
		} else if !os.IsNotExist(err) {
			t.Fatalf("%s: %v", kill, err)
		}
	}
	root, ok := points["freezer"]
	if !ok || paths["freezer"] == "" {
		t.Fatalf("pid %d: no cgroup v2 path with cgroup.kill and no freezer cgroup: %q", pid, data)
	}
	dir := filepath.Join(root, paths["freezer"])
	state := filepath.Join(dir, "freezer.state")
	if err := os.WriteFile(state, []byte("FROZEN"), 0); err != nil {
		t.Fatalf("freeze %s: %v", dir, err)
	}
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(procs)) {
		if p, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	if err := os.WriteFile(state, []byte("THAWED"), 0); err != nil {
		t.Fatalf("thaw %s: %v", dir, err)
	}
}

// footprint samples the supervisor pid: RSS and descriptors from /proc,
// goroutines from its /metrics.
func (d *device) footprint(pid int) sample {
	d.t.Helper()
	s := sample{supervisor: pid}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		d.t.Fatalf("supervisor status: %v", err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			s.rss, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		d.t.Fatalf("supervisor fds: %v", err)
	}
	s.fds = len(fds)
	out, code := d.pvcontrol("request", "GET", "/metrics")
	if code != 0 {
		d.t.Fatalf("GET /metrics: %d %s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "pv_supervisor_goroutines "); ok {
			s.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if s.rss == 0 || s.goroutines == 0 {
		d.t.Fatalf("footprint incomplete: %+v", s)
	}
	return s
}

func medianOf(ss []sample, f func(sample) int64) int64 {
	v := make([]int64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func maxOf(ss []sample, f func(sample) int) int {
	m := f(ss[0])
	for _, s := range ss[1:] {
		m = max(m, f(s))
	}
	return m
}

func minOf(ss []sample, f func(sample) int) int {
	m := f(ss[0])
	for _, s := range ss[1:] {
		m = min(m, f(s))
	}
	return m
}
