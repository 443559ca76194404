package actors

import (
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// member is what group gating needs to know about one container.
type member struct {
	group    int
	status   messages.Status
	goal     state.Goal
	timedOut bool
}

// goalStopped is the goal of a container stopped through the API, as
// upstream sets it: reached once it is STOPPED, until the API starts it.
const goalStopped state.Goal = "STOPPED"

// achieved reports whether a container is at its goal. A container that
// reached READY also satisfies STARTED; MOUNTED is only reached by mounting.
func achieved(status messages.Status, goal state.Goal) bool {
	switch goal {
	case goalStopped:
		return status == messages.StatusStopped
	case state.GoalMounted:
		return status == messages.StatusMounted
	case state.GoalStarted:
		return status == messages.StatusStarted || status == messages.StatusReady
	case state.GoalReady:
		return status == messages.StatusReady
	}
	return false
}

// groupOpen reports whether the containers of group g may start: every
// container of every earlier group reached its goal or ran out of time, as
// upstream's run loop decides.
func groupOpen(g int, members []member) bool {
	for _, m := range members {
		if m.group < g && !achieved(m.status, m.goal) && !m.timedOut {
			return false
		}
	}
	return true
}

// groupStatus aggregates a group as upstream's GET /groups does: the lowest
// status among members that have not reached their goal, READY when all
// have (or STARTED-level goals are met), INSTALLED for an empty group.
func groupStatus(g int, members []member) messages.Status {
	lowest := messages.Status("")
	any := false
	for _, m := range members {
		if m.group != g {
			continue
		}
		any = true
		if achieved(m.status, m.goal) {
			continue
		}
		if lowest == "" || statusRank(m.status) < statusRank(lowest) {
			lowest = m.status
		}
	}
	switch {
	case !any:
		return messages.StatusInstalled
	case lowest == "":
		return messages.StatusReady
	}
	return lowest
}

// statusRank orders statuses as upstream's enum does.
func statusRank(s messages.Status) int {
	switch s {
	case messages.StatusInstalled:
		return 1
	case messages.StatusMounted:
		return 2
	case messages.StatusBlocked:
		return 3
	case messages.StatusStarting:
		return 4
	case messages.StatusStarted:
		return 5
	case messages.StatusReady:
		return 6
	case messages.StatusRecovering:
		return 7
	case messages.StatusStopping:
		return 8
	case messages.StatusStopped:
		return 9
	case messages.StatusFailed:
		return 10
	}
	return 0
}
