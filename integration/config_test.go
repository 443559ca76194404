//go:build integration

package integration

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/storage"
)

// configCtrs is a revision whose container b reads its config overlay
// (upstream's _config/b/...): an object shadowing the image's
// /etc/hostname, an object in a directory the image lacks, and an inline
// JSON document. sys and a have none.
func configCtrs(word string) []ctr {
	return []ctr{
		{name: "sys", group: "core", cmd: echoer("sys-up")},
		{name: "a", group: "app", cmd: echoer("a-up")},
		{name: "b", group: "app",
			cmd: `/bin/sh "-c" "trap 'exit 0' TERM; echo config: $(cat /etc/hostname /etc/app/greeting /etc/app/app.json); ` +
				`echo written > /etc/app/greeting && echo wrote: $(cat /etc/app/greeting); while true; do sleep 0.1; done"`,
			config: map[string]any{
				"etc/hostname":     []byte("host-" + word + "\n"),
				"etc/app/greeting": []byte("greeting-" + word + "\n"),
				"etc/app/app.json": map[string]any{"word": word},
			}},
	}
}

// A revision's _config/<name>/ files appear in the container's root over
// its image, as upstream lays them; the container may write them; an
// update that changes them restarts that container alone, with the new
// files and none of its writes.
func TestConfigOverlay(t *testing.T) {
	isolated.Require(t)
	dir := buildStorage(t, updateGroups(), configCtrs("v1"))
	d := startDeviceEnv(t, dir, commitDelay)
	before := pidsOf(d.waitUp("first boot", 30*time.Second))
	d.waitConsole("b", `config: host-v1 greeting-v1 { "word": "v1" }`, 10*time.Second)
	d.waitConsole("b", "wrote: written", 10*time.Second)
	if !strings.Contains(d.log(), "config overlay laid over the root") {
		t.Errorf("the overlay was not logged:\n%s", d.log())
	}

	// A new supervisor adopts b with its overlay: same process, and the
	// overlay neither written again nor gone.
	up := d.waitUp("before the kill", 10*time.Second)
	sup := supervisor(d)
	if sup == 0 {
		t.Fatal("supervisor not found")
	}
	killed := time.Now()
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// readopted fails the test unless each is STARTED with the same pid.
	readopted(t, ctrlClient(d.sock()), up, []string{"sys", "a", "b"}, killed)
	if n := strings.Count(d.log(), "config overlay laid over the root"); n != 1 {
		t.Errorf("the overlay was laid %d times, want once: the adoption made it again", n)
	}

	next := buildStorage(t, updateGroups(), configCtrs("v2"))
	d.upload(next, "v2")
	if out, code := d.pvcontrol("cmd", "run", "locals/v2"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	if p, seen := d.waitProgress("locals/v2", 60*time.Second); p.Status != storage.StatusUpdated {
		t.Fatalf("final progress %+v (seen %v)", p, seen)
	}
	after := pidsOf(d.waitUp("after the update", 10*time.Second))
	if after["sys"] != before["sys"] || after["a"] != before["a"] {
		t.Errorf("containers without a config change were restarted: before %v after %v", before, after)
	}
	if after["b"] == before["b"] {
		t.Errorf("b, whose config changed, was not restarted: before %v after %v", before, after)
	}
	d.waitConsole("b", `config: host-v2 greeting-v2 { "word": "v2" }`, 10*time.Second)
}

// A revision whose lxc config the runtime cannot run (here a cgroup key
// it does not know) is refused at LOCAL_RUN, naming the container and
// the key, before anything is installed: before, it was tried, its
// container failed to start, and the device rolled back.
func TestRunRefusesWhatTheRuntimeCannotRun(t *testing.T) {
	isolated.Require(t)
	dir := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v1"), nil))
	d := startDeviceEnv(t, dir, commitDelay)
	before := pidsOf(d.waitUp("first boot", 30*time.Second))

	bad := updateCtrs("sys-v1", echoer("b-v2"), nil)
	bad[2].lxc = []string{"lxc.cgroup.pids.nosuchkey = 1"}
	next := buildStorage(t, updateGroups(), bad)
	d.upload(next, "bad")
	out, code := d.pvcontrol("cmd", "run", "locals/bad")
	if code == 0 || !strings.Contains(out, "translate container b") || !strings.Contains(out, "nosuchkey") {
		t.Fatalf("cmd run of a revision the runtime cannot run: %d %s", code, out)
	}
	t.Logf("refused: %s", out)
	if env := bootEnv(t, dir); env.Try() != "" {
		t.Errorf("the refused revision was armed: %v", env)
	}
	if p, _ := d.progress("locals/bad"); p.Status != storage.StatusNew {
		t.Errorf("progress of the refused revision: %+v", p)
	}
	after := pidsOf(d.waitUp("after the refusal", 10*time.Second))
	for n, pid := range before {
		if after[n] != pid {
			t.Errorf("%s was restarted: before %v after %v", n, before, after)
		}
	}
}
