//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/testrootfs"
	pvstorage "github.com/pantavisor/pv/storage"
)

// bin holds the binaries under test, built once per test process.
var bin string

func TestMain(m *testing.M) {
	if isolated.Check() != nil {
		// Nothing to build: every test skips, saying why (isolated.Require
		// first thing in each), so the run shows what it left out.
		os.Exit(printSuite(m.Run()))
	}
	dir, err := os.MkdirTemp("", "pv-integration-bin-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	bin = dir
	for _, b := range []struct{ out, pkg, cgo, experiment string }{
		{"pantavisor", "../cmd/pantavisor", "1", ""},
		// As make build builds it (PVINIT_EXPERIMENT in the Makefile).
		{"pvinit", "../cmd/pvinit", "1", "jsonv2"},
		{"pvcontrol", "../cmd/pvcontrol", "0", ""},
		{"pvapp", "../examples/pvapp", "0", ""},
	} {
		args := []string{"build", "-o", filepath.Join(dir, b.out)}
		if b.cgo == "1" {
			// Linked as make build links them, with the C compiler and
			// flags it passes (CC, CGO_CFLAGS: musl where installed).
			args = append(args, "-tags", "netgo,osusergo", "-ldflags", "-extldflags=-static")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo, "GOEXPERIMENT="+b.experiment)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("build %s: %v\n%s", b.pkg, err, out)
			os.Exit(1)
		}
	}
	code := printSuite(m.Run())
	testrootfs.Cleanup()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	imageOnce sync.Once
	image     string
	imageErr  error
)

// rootImage is a squashfs of the busybox test rootfs plus /bin/pvapp.
func rootImage(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pv-integration-root-")
		if err != nil {
			imageErr = err
			return
		}
		root := filepath.Join(dir, "rootfs")
		if out, err := exec.Command("cp", "-a", testrootfs.Dir(t), root).CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("copy rootfs: %v: %s", err, out)
			return
		}
		data, err := os.ReadFile(filepath.Join(bin, "pvapp"))
		if err == nil {
			err = os.WriteFile(filepath.Join(root, "bin", "pvapp"), data, 0o755)
		}
		if err == nil {
			err = os.MkdirAll(filepath.Join(root, "pantavisor"), 0o755)
		}
		if err != nil {
			imageErr = err
			return
		}
		image = filepath.Join(dir, "root.squashfs")
		imageErr = testrootfs.MakeSquashfs(root, image)
	})
	if imageErr != nil {
		t.Fatalf("root image: %v", imageErr)
	}
	return image
}

// ctr is one container of a test revision.
type ctr struct {
	name  string
	group string
	// cmd is the init command line as lxc.init.cmd writes it.
	cmd string
	// lxc holds extra lxc.container.conf lines.
	lxc []string
	// run holds extra run.json keys.
	run map[string]any
	// services is the container's services.json, when it exports any.
	services any
	// files are more files of the container's directory in the revision.
	files map[string][]byte
	// config is its config overlay (revtest.Container.Config).
	config map[string]any
}

// addDeviceJSON puts fields (JSON members, each line ending in a comma)
// at the start of device.json in the revision buildStorage made: pools,
// ingress rules.
func addDeviceJSON(t *testing.T, storage, fields string) {
	t.Helper()
	path := filepath.Join(storage, "trails", "0", ".pvr", "json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), `"device.json": {`, "\"device.json\": {\n"+fields, 1)
	if s == string(data) {
		t.Fatal("no device.json in the revision")
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildStorage lays out a device storage with revision 0 made of ctrs, the
// way a device keeps it, with upstream's container template; groups get the
// container restart policy unless they name one.
func buildStorage(t *testing.T, groups []map[string]any, ctrs []ctr) string {
	t.Helper()
	dir := t.TempDir()
	gs := make([]any, len(groups))
	for i, g := range groups {
		if _, ok := g["restart_policy"]; !ok {
			g["restart_policy"] = "container"
		}
		gs[i] = g
	}
	rc := make([]revtest.Container, len(ctrs))
	for i, c := range ctrs {
		rc[i] = revtest.Container{Name: c.name, Group: c.group, Cmd: c.cmd,
			LXC: append(append([]string(nil), revtest.UpstreamLXC...), c.lxc...), Run: c.run, Services: c.services, Files: c.files, Config: c.config}
	}
	if err := revtest.Build(dir, rootImage(t), map[string]any{"groups": gs}, rc); err != nil {
		t.Fatal(err)
	}
	return dir
}

// device is a running `pantavisor appengine`.
type device struct {
	t       *testing.T
	storage string
	run     string
	cmd     *exec.Cmd
	out     *bytes.Buffer
	outMu   *sync.Mutex
	exited  chan struct{}
	exitErr error
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// idle ends a container's shell command: it waits until the container is
// stopped, and a SIGTERM ends it at once. The shell is its pid namespace's
// init, which the kernel spares the signals it has no handler for: after
// "exec sleep 1000" every device stop would wait out its 10 s grace for
// the SIGKILL.
const idle = `trap 'exit 0' TERM; sleep 1000 & wait`

// startDevice runs pantavisor appengine on storage and waits for its control
// socket. The device is stopped (SIGTERM) at the end of the test if the test
// did not stop it.
func startDevice(t *testing.T, storage string) *device {
	t.Helper()
	return startDeviceArgs(t, storage)
}

// startDeviceArgs is startDevice with extra appengine arguments.
func startDeviceArgs(t *testing.T, storage string, args ...string) *device {
	t.Helper()
	return startDeviceEnv(t, storage, nil, args...)
}

// startDeviceEnv is startDeviceArgs with variables added to pantavisor's
// environment.
func startDeviceEnv(t *testing.T, storage string, env []string, args ...string) *device {
	t.Helper()
	d := launchDevice(t, storage, env, args...)
	if exited := d.waitSocket(20 * time.Second); exited {
		t.Fatalf("pantavisor exited early: %v\n%s", d.exitErr, d.output())
	}
	return d
}

// launchDevice starts pantavisor appengine on storage and stops it when t
// ends (its output logged if t failed), without waiting for anything.
func launchDevice(t *testing.T, storage string, env []string, args ...string) *device {
	t.Helper()
	d := &device{t: t, storage: storage, run: t.TempDir(), out: &bytes.Buffer{}, outMu: &sync.Mutex{}, exited: make(chan struct{})}
	d.cmd = exec.Command(filepath.Join(bin, "pantavisor"), append([]string{"appengine", "--storage", storage, "--run", d.run}, args...)...)
	if env != nil {
		d.cmd.Env = append(os.Environ(), env...)
	}
	w := lockedWriter{d.outMu, d.out}
	d.cmd.Stdout, d.cmd.Stderr = w, w
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.stop(30 * time.Second)
		}
		if t.Failed() {
			t.Logf("pantavisor output:\n%s", d.output())
		}
	})
	return d
}

// waitSocket waits for the control socket, or for the device's exit
// (exited true); neither within timeout fails the test.
func (d *device) waitSocket(timeout time.Duration) (exited bool) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(d.sock()); err == nil {
			return false
		}
		select {
		case <-d.exited:
			return true
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("neither a control socket nor an exit after %v:\n%s", timeout, d.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *device) sock() string { return filepath.Join(d.run, "pv-ctrl") }

func (d *device) output() string {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	return d.out.String()
}

// waitOutput waits until pantavisor's output holds s.
func (d *device) waitOutput(s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.output(), s) {
		if time.Now().After(deadline) {
			d.t.Fatalf("no %q in the output after %v:\n%s", s, timeout, d.output())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitExit waits for pantavisor to exit and returns its exit code.
func (d *device) waitExit(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.exited:
	case <-time.After(timeout):
		d.t.Fatalf("pantavisor did not exit within %v", timeout)
	}
	return d.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and returns pantavisor's exit code.
func (d *device) stop(timeout time.Duration) int {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(timeout):
		// The control socket serves until the actors have stopped:
		// the tree tells which one holds the stop up.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tree, _ := exec.CommandContext(ctx, filepath.Join(bin, "pvcontrol"), "-s", d.sock(), "tree").CombinedOutput()
		cancel()
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("pantavisor did not stop within %v; its actor tree then:\n%s", timeout, tree)
	}
	return d.cmd.ProcessState.ExitCode()
}

// pvcontrol runs bin/pvcontrol against the device.
func (d *device) pvcontrol(args ...string) (string, int) {
	cmd := exec.Command(filepath.Join(bin, "pvcontrol"), append([]string{"-s", d.sock()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("pvcontrol: %v", err)
	}
	return out.String() + errb.String(), code
}

func (d *device) containers() []messages.ContainerInfo {
	out, code := d.pvcontrol("ls", "--json")
	if code != 0 {
		d.t.Fatalf("pvcontrol ls: exit %d: %s", code, out)
	}
	var cs []messages.ContainerInfo
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		d.t.Fatalf("pvcontrol ls --json: %v: %s", err, out)
	}
	return cs
}

// waitContainers polls pvcontrol ls until cond holds.
func (d *device) waitContainers(what string, timeout time.Duration, cond func(map[string]messages.ContainerInfo) bool) map[string]messages.ContainerInfo {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := map[string]messages.ContainerInfo{}
		for _, c := range d.containers() {
			m[c.Name] = c
		}
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(m, "", " ")
			d.t.Fatalf("timeout waiting for %s; containers:\n%s", what, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logLines returns pantavisor.log of revision 0.
// log is pantavisor's log file of every revision that ran.
func (d *device) log() string {
	return d.logFiles("pantavisor", "pantavisor.log")
}

// logFiles concatenates a log file of every revision that ran (logs/<rev>/
// and logs/locals/<name>/), in name order.
func (d *device) logFiles(dir, file string) string {
	paths, _ := filepath.Glob(filepath.Join(d.storage, "logs", "*", dir, file))
	locals, _ := filepath.Glob(filepath.Join(d.storage, "logs", "locals", "*", dir, file))
	var b strings.Builder
	for _, p := range append(paths, locals...) {
		data, _ := os.ReadFile(p)
		b.Write(data)
	}
	return b.String()
}

// commitAs makes the storage's revision "0" (buildStorage's) revision rev,
// committed in the appengine bootloader: a device past its factory
// revision, whose failures reboot instead of entering safe mode.
func commitAs(t *testing.T, dir, rev string) {
	t.Helper()
	l := pvstorage.Layout{Root: dir}
	if err := os.Rename(l.Trail("0"), l.Trail(rev)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.Boot(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (bootloader.AppEngine{Dir: l.Boot()}).Save(bootloader.Env{"pv_rev": rev}); err != nil {
		t.Fatal(err)
	}
}

// waitConsole waits until a container's console log contains s.
func (d *device) waitConsole(name, s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.console(name), s) {
		if time.Now().After(deadline) {
			d.t.Fatalf("%s console never showed %q: %q", name, s, d.console(name))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *device) console(name string) string {
	return d.logFiles(name, "console.log")
}

// lineIndex returns the index of the first log line containing all parts.
func lineIndex(log string, parts ...string) int {
	for i, l := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return i
		}
	}
	return -1
}

func statusIs(want messages.Status, names ...string) func(map[string]messages.ContainerInfo) bool {
	return func(m map[string]messages.ContainerInfo) bool {
		for _, n := range names {
			if m[n].Status != want {
				return false
			}
		}
		return true
	}
}
