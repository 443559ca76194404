package actors

import (
	"testing"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

func TestGroupOpen(t *testing.T) {
	const (
		inst    = messages.StatusInstalled
		mounted = messages.StatusMounted
		started = messages.StatusStarted
		ready   = messages.StatusReady
		failed  = messages.StatusFailed
	)
	tests := []struct {
		name    string
		members []member
		group   int
		want    bool
	}{
		{"first group always open", []member{{0, inst, state.GoalStarted, false}}, 0, true},
		{"previous group not started", []member{{0, inst, state.GoalStarted, false}, {1, inst, state.GoalStarted, false}}, 1, false},
		{"previous group started", []member{{0, started, state.GoalStarted, false}, {1, inst, state.GoalStarted, false}}, 1, true},
		{"ready satisfies started", []member{{0, ready, state.GoalStarted, false}}, 1, true},
		{"started does not satisfy ready", []member{{0, started, state.GoalReady, false}}, 1, false},
		{"ready goal reached", []member{{0, ready, state.GoalReady, false}}, 1, true},
		{"mounted goal reached", []member{{0, mounted, state.GoalMounted, false}}, 1, true},
		{"timed out opens the gate", []member{{0, inst, state.GoalReady, true}}, 1, true},
		{"failed blocks until timeout", []member{{0, failed, state.GoalStarted, false}}, 1, false},
		{"every earlier group counts", []member{{0, started, state.GoalStarted, false}, {1, inst, state.GoalStarted, false}}, 2, false},
		{"later groups do not block", []member{{2, inst, state.GoalStarted, false}}, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := groupOpen(tc.group, tc.members); got != tc.want {
				t.Errorf("groupOpen(%d) = %v, want %v", tc.group, got, tc.want)
			}
		})
	}
}

func TestGroupStatus(t *testing.T) {
	tests := []struct {
		name    string
		members []member
		want    messages.Status
	}{
		{"empty", nil, messages.StatusInstalled},
		{"all achieved", []member{{0, messages.StatusStarted, state.GoalStarted, false}}, messages.StatusReady},
		{"lowest unachieved", []member{
			{0, messages.StatusStarted, state.GoalStarted, false},
			{0, messages.StatusStarting, state.GoalStarted, false},
			{0, messages.StatusStarted, state.GoalReady, false},
		}, messages.StatusStarting},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := groupStatus(0, tc.members); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
