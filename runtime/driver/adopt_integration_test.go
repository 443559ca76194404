//go:build integration

package driver

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pantavisor/pv/spec"
)

// A board without an RTC battery starts its containers with the clock
// near 1970 (or at its build date); NTP then steps it by decades, or back
// by months. A supervisor started again after the step re-adopts them:
// the start it reports is what the run's length is measured from (the
// recovery policy's reset window, the uptime shown), so it must be the
// init's true age, whatever wall time libcontainer wrote at creation.
func TestAdoptedStartSurvivesAClockStep(t *testing.T) {
	e := newEnv(t)
	c, _ := e.create(t, "stepped", &spec.Container{Args: []string{"/bin/sleep", "100"}}, nil)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	statePath := filepath.Join(e.d.stateRoot, "stepped", "state.json")
	for _, step := range []struct {
		name    string
		created time.Time // what libcontainer wrote, as the clock was then
	}{
		{"forward by decades", time.Unix(42, 0).UTC()},
		{"back by a year", time.Now().AddDate(1, 0, 0).UTC()},
	} {
		raw, err := os.ReadFile(statePath)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]json.RawMessage
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		st["created"], _ = json.Marshal(step.created)
		if raw, err = json.Marshal(st); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(statePath, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := e.d.Adopt("stepped", nil)
		if err != nil {
			t.Fatalf("%s: adopt: %v", step.name, err)
		}
		// The init's start is known to its clock tick (10 ms), the
		// process's start a little before Run returned.
		age, upper := time.Since(a.Created()), time.Since(started)+time.Second
		if age < 0 || age > upper {
			t.Errorf("clock stepped %s: the adopted init is %v old, want 0..%v", step.name, age, upper)
		}
	}
}
