package update

import (
	"fmt"
	"testing"

	"github.com/pantavisor/pv/state"
)

// Diff runs in root's Receive: for two states of 20 000 containers it
// must not scan one list per container of the other (seconds, where the
// watchdog waits on root; BenchmarkDiffOfLargeStates). What it decides
// for them:
func TestDiffOfLargeStates(t *testing.T) {
	tr := Diff(largeState(-1), largeState(7))
	if tr.Reboot || len(tr.Stop) != 1 || tr.Stop[0] != "c00007" || len(tr.Keep) != 19999 {
		t.Errorf("transition %+v", tr.Reason)
	}
}

// BenchmarkDiffOfLargeStates: a scan per container took 2.9 s for these
// two states, the indexes about 0.1 s (go test -bench DiffOfLarge
// ./update/). Speed is measured here, never asserted by a test.
func BenchmarkDiffOfLargeStates(b *testing.B) {
	from, to := largeState(-1), largeState(7)
	for b.Loop() {
		Diff(from, to)
	}
}

// largeState is a state of 20000 containers, the one numbered changed
// (none when -1) with another role.
func largeState(changed int) *state.State {
	st := &state.State{Objects: map[string]string{}}
	for i := 0; i < 20000; i++ {
		c := &state.Container{Name: fmt.Sprintf("c%05d", i), Group: "app", RestartPolicy: state.RestartContainer}
		if i == changed {
			c.Roles = []string{"mgmt"}
		}
		st.Containers = append(st.Containers, c)
	}
	return st
}
