package update

import (
	"fmt"
	"testing"
	"time"

	"github.com/pantavisor/pv/state"
)

// Diff runs in root's Receive: for two states of 20 000 containers it
// must not scan one list per container of the other (seconds, where the
// watchdog waits on root). A generous bound, far below the scans' cost.
func TestDiffOfLargeStatesIsQuick(t *testing.T) {
	mk := func(changed int) *state.State {
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
	start := time.Now()
	tr := Diff(mk(-1), mk(7))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Diff of two states of 20000 containers took %v", took)
	}
	if tr.Reboot || len(tr.Stop) != 1 || tr.Stop[0] != "c00007" || len(tr.Keep) != 19999 {
		t.Errorf("transition %+v", tr.Reason)
	}
}
