package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash tests run the update sequence below in a child process (this
// test binary re-executed) and SIGKILL it, then check that Recover leaves
// a consistent store holding either the old revision or the new one whole.
// A SIGKILL proves the atomicity of each step (what the renames publish);
// it cannot prove the fsyncs, since the page cache survives the process.

const (
	envCrashRoot = "PV_STORAGE_CRASH_ROOT" // the storage the child updates
	envCrashAt   = "PV_STORAGE_CRASH_AT"   // "<step>:<n>": the child kills itself at the n-th hit of step
)

// crashObject is a deterministic object of n bytes, different per seed.
func crashObject(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed
	}
	return b
}

func shaBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// The old revision "0" and the update "1" share one object.
var (
	crashShared  = crashObject(1, 64<<10)
	crashFactory = crashObject(2, 64<<10)
	crashRoot    = crashObject(3, 8<<20)
	crashConf    = crashObject(4, 300)
	crashExtra   = crashObject(5, 1<<20)
)

func crashState(objs map[string][]byte) []byte {
	var b strings.Builder
	b.WriteString(`{"#spec":"pantavisor-service-system@1","device.json":{"groups":[{"name":"app"}]}`)
	for _, key := range slices.Sorted(maps.Keys(objs)) {
		fmt.Fprintf(&b, ",%q:%q", key, shaBytes(objs[key]))
	}
	b.WriteString("}")
	return []byte(b.String())
}

var (
	crashRev0 = map[string][]byte{"app/lib": crashShared, "app/root.squashfs": crashFactory}
	crashRev1 = map[string][]byte{"app/lib": crashShared, "app/root.squashfs": crashRoot,
		"app/lxc.container.conf": crashConf, "bsp/extra": crashExtra}
)

// crashSetup makes a store holding revision 0, as the child finds it.
func crashSetup(t *testing.T) Layout {
	t.Helper()
	l := newLayout(t)
	for _, data := range crashRev0 {
		if _, err := l.PutObject(shaBytes(data), bytes.NewReader(data), 0); err != nil {
			t.Fatal(err)
		}
	}
	p := NewProgress(StatusDone, MsgFactory)
	if err := l.InstallTrail("0", crashState(crashRev0), InstallOptions{Progress: &p}); err != nil {
		t.Fatal(err)
	}
	return l
}

// crashPhases are the parts of crashUpdate, in order; the child names each
// as it enters it.
var crashPhases = []string{"objects", "install", "progress", "gc", "commit"}

// crashUpdate is the sequence under test: put the update's objects,
// install it, move its progress on, drop the old revision, commit. phase
// is called as each of crashPhases begins.
func crashUpdate(l Layout, phase func(string)) error {
	phase("objects")
	for _, key := range slices.Sorted(maps.Keys(crashRev1)) {
		data := crashRev1[key]
		if _, err := l.PutObject(shaBytes(data), bytes.NewReader(data), 0); err != nil {
			return err
		}
	}
	phase("install")
	p := NewProgress(StatusNew, MsgInstalled)
	if err := l.InstallTrail("1", crashState(crashRev1), InstallOptions{Progress: &p, CommitMsg: "update"}); err != nil {
		return err
	}
	phase("progress")
	if err := l.WriteProgress("1", NewProgress(StatusInProgress, MsgReboot)); err != nil {
		return err
	}
	if err := l.SetCurrent("1"); err != nil {
		return err
	}
	phase("gc")
	if _, err := l.GC(GCOptions{Keep: []string{"1"}}); err != nil {
		return err
	}
	phase("commit")
	if err := l.WriteProgress("1", NewProgress(StatusDone, MsgDone)); err != nil {
		return err
	}
	return l.MarkDone("1")
}

// TestCrashChild is the child: it runs only when re-executed by a crash
// test.
func TestCrashChild(t *testing.T) {
	root := os.Getenv(envCrashRoot)
	if root == "" {
		t.Skip("the child of the crash tests")
	}
	if at := os.Getenv(envCrashAt); at != "" {
		step, nth, _ := strings.Cut(at, ":")
		n, _ := strconv.Atoi(nth)
		hits := 0
		fault = func(s string) error {
			if s == step {
				if hits++; hits == n {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {} // the signal is on its way
				}
			}
			return nil
		}
	}
	// The parent times its kills from these lines.
	phase := func(name string) { fmt.Printf("%s%s\n", crashMark, name) }
	if err := crashUpdate(Layout{Root: root}, phase); err != nil {
		t.Fatal(err)
	}
}

// crashMark starts the line the child prints as it enters a phase.
const crashMark = "crash child: phase "

// phaseWriter collects the child's output and records when each phase
// began.
type phaseWriter struct {
	mu      sync.Mutex
	out     bytes.Buffer
	lines   int // complete lines seen
	entered map[string]chan time.Time
}

func (w *phaseWriter) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out.Write(p)
	lines := strings.Split(w.out.String(), "\n")
	for ; w.lines < len(lines)-1; w.lines++ {
		if name, ok := strings.CutPrefix(lines[w.lines], crashMark); ok {
			if ch := w.entered[name]; ch != nil {
				ch <- now // buffered: each phase once
			}
		}
	}
	return len(p), nil
}

// crashChild starts the child on l. The channels deliver the instant the
// child entered each phase.
func crashChild(t *testing.T, l Layout, at string) (*exec.Cmd, map[string]chan time.Time) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashRoot+"="+l.Root, envCrashAt+"="+at)
	w := &phaseWriter{entered: map[string]chan time.Time{}}
	for _, p := range crashPhases {
		w.entered[p] = make(chan time.Time, 1)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			w.mu.Lock()
			t.Logf("child output:\n%s", w.out.String())
			w.mu.Unlock()
		}
	})
	return cmd, w.entered
}

// crashOutcome checks the store after the child died and says what it
// holds: "old" (revision 0 only), "both" or "new" (revision 1 only).
func crashOutcome(t *testing.T, l Layout) string {
	t.Helper()
	if _, err := l.Recover(); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if err := l.Check(); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	has := func(rev string) bool {
		_, err := os.Stat(l.Trail(rev))
		return err == nil
	}
	whole := func(rev string, objs map[string][]byte) {
		t.Helper()
		st, err := l.ReadState(rev)
		if err != nil || !bytes.Equal(st, crashState(objs)) {
			t.Fatalf("revision %s: state %q, %v", rev, st, err)
		}
		for key, data := range objs {
			got, err := os.ReadFile(filepath.Join(l.Trail(rev), key))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("revision %s: %s not whole: %v", rev, key, err)
			}
		}
		if _, err := os.Stat(filepath.Join(l.Trail(rev), TrailConfig)); err != nil {
			t.Fatalf("revision %s: %v", rev, err)
		}
		if _, err := l.ReadProgress(rev); err != nil {
			t.Fatalf("revision %s: %v", rev, err)
		}
	}
	old, upd := has("0"), has("1")
	switch {
	case old && upd:
		whole("0", crashRev0)
		whole("1", crashRev1)
		return "both"
	case old:
		whole("0", crashRev0)
		return "old"
	case upd:
		whole("1", crashRev1)
		return "new"
	}
	t.Fatal("neither revision is left")
	return ""
}

func TestCrashAtEveryStep(t *testing.T) {
	for _, at := range []string{
		"object.write:1", "object.write:2", "object.sync:1", "object.rename:1", "object.rename:3",
		"install.json:1", "install.link:2", "install.sync:1", "install.rename:1", "remove.delete:1",
	} {
		t.Run(at, func(t *testing.T) {
			l := crashSetup(t)
			cmd, _ := crashChild(t, l, at)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die at %s: %v", at, err)
			}
			outcome := crashOutcome(t, l)
			// Up to the install's rename revision 1 is not there; from
			// the removal of revision 0 on it is.
			want := map[string]string{"install.rename:1": "old", "remove.delete:1": "new"}[at]
			if strings.HasPrefix(at, "object.") || strings.HasPrefix(at, "install.json") ||
				strings.HasPrefix(at, "install.link") || strings.HasPrefix(at, "install.sync") {
				want = "old"
			}
			if outcome != want {
				t.Errorf("killed at %s: store holds %s, want %s", at, outcome, want)
			}
		})
	}
}

// TestCrashAtRandomInstants kills the child at random instants. To cover
// every phase, not just the long writes of the objects, each run picks a
// phase in turn and kills at a uniformly random instant within it, as long
// as the phase took in an uninterrupted run. (The child's phase line
// reaches the parent through a pipe, so kills fall somewhat later than
// drawn; the outcomes logged show the spread.)
func TestCrashAtRandomInstants(t *testing.T) {
	runs := 25
	if testing.Short() {
		runs = 10
	}
	l := crashSetup(t)
	cmd, entered := crashChild(t, l, "")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("uninterrupted update: %v", err)
	}
	exited := time.Now()
	if got := crashOutcome(t, l); got != "new" {
		t.Fatalf("uninterrupted update left %s", got)
	}
	span := map[string]time.Duration{}
	var starts []time.Time
	for _, p := range crashPhases {
		starts = append(starts, <-entered[p])
	}
	for i, p := range crashPhases {
		end := exited
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		span[p] = max(end.Sub(starts[i]), time.Millisecond)
	}
	seen := map[string]int{}
	for i := 0; i < runs; i++ {
		phase := crashPhases[i%len(crashPhases)]
		l := crashSetup(t)
		cmd, entered := crashChild(t, l, "")
		select {
		case <-entered[phase]:
		case <-time.After(time.Minute):
			t.Fatalf("the child did not reach phase %s", phase)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(span[phase]))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		seen[phase+" -> "+crashOutcome(t, l)]++
		if t.Failed() {
			return
		}
	}
	t.Logf("phases %v; outcomes of %d kills: %v", span, runs, seen)
}
