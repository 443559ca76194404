package main

import (
	"fmt"
	"os"
	"strconv"
)

// supervisorOOMScoreAdj keeps the OOM killer off the supervisor while any
// container process is left to kill: memory a container fills (a leak
// spread over many small processes, a tmpfs, which no process is charged
// for) would otherwise have the kernel kill the largest single process,
// often the supervisor, again after each restart by PID 1, until its crash
// loop reboots the device. -999, not -1000: a supervisor that leaks itself
// stays killable, and the kernel never panics for want of a process to
// kill. The containers' inits set their own back to 0 (runtime/driver).
const supervisorOOMScoreAdj = -999

// protectFromOOM sets the supervisor's oom_score_adj.
func protectFromOOM() error {
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(supervisorOOMScoreAdj)), 0); err != nil {
		return fmt.Errorf("protect the supervisor from the OOM killer: %w", err)
	}
	return nil
}
