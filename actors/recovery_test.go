package actors

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// oneContainer builds a state with container "app" in group "apps" (policy
// container) and "sys" in group "core" (policy system), with the given
// run.json extras for "app".
func oneContainer(t *testing.T, app map[string]any) *state.State {
	t.Helper()
	return parseState(t, oneContainerDoc(app))
}

// oneContainerDoc is oneContainer's state document.
func oneContainerDoc(app map[string]any) map[string]any {
	run := map[string]any{"name": "app", "group": "apps"}
	for k, v := range app {
		run[k] = v
	}
	doc := map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{"groups": []any{
			map[string]any{"name": "core", "restart_policy": "system"},
			map[string]any{"name": "apps", "restart_policy": "container"},
		}},
		"sys/run.json": map[string]any{"name": "sys", "group": "core", "auto_recovery": map[string]any{"policy": "no"}},
		"app/run.json": run,
	}
	return doc
}

func countEvents(e *fakeEngine, ev string) int {
	n := 0
	for _, x := range e.Events() {
		if x == ev {
			n++
		}
	}
	return n
}

// waitEvents waits until ev happened n times.
func waitEvents(t *testing.T, e *fakeEngine, ev string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for countEvents(e, ev) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q happened %d times, want %d: %v", ev, countEvents(e, ev), n, e.Events())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func info(t *testing.T, sys *System, name string) messages.ContainerInfo {
	t.Helper()
	cs, err := sys.Containers()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return messages.ContainerInfo{}
}

func TestOnFailureRetriesThenFails(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{
		"policy": "on-failure", "max_retries": 3, "retry_delay": 0}}), e)
	for i := 1; i <= 4; i++ {
		waitEvents(t, e, "start app", i, 5*time.Second)
		waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
		e.run("app").Exit(1, 0)
		if i <= 3 {
			waitEvents(t, e, "start app", i+1, 5*time.Second)
		}
	}
	c := waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusFailed})
	if got := countEvents(e, "start app"); got != 4 {
		t.Errorf("%d starts, want 1 + 3 retries", got)
	}
	for _, x := range c {
		if x.Name == "app" && (x.AutoRecovery.CurrentRetries != 3 || !strings.Contains(x.Error, "gave up after 3 retries")) {
			t.Errorf("app: retries %d error %q", x.AutoRecovery.CurrentRetries, x.Error)
		}
		if x.Name == "sys" && x.Status != messages.StatusStarted {
			t.Errorf("the rest of the revision stopped: sys %s", x.Status)
		}
	}
}

func TestOnFailureCleanExitDoesNotRestart(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "on-failure"}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(0, 0)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStopped})
	time.Sleep(50 * time.Millisecond)
	if n := countEvents(e, "start app"); n != 1 {
		t.Errorf("restarted after a clean exit: %d starts", n)
	}
}

func TestAlwaysRestartsCleanExitAndSignals(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "always"}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(0, 0)
	waitEvents(t, e, "start app", 2, 5*time.Second)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(0, 9)
	waitEvents(t, e, "start app", 3, 5*time.Second)
	if n := info(t, sys, "app"); n.AutoRecovery.CurrentRetries != 2 {
		t.Errorf("retries %d, want 2", n.AutoRecovery.CurrentRetries)
	}
}

func TestBackoffDelayAndRecoveringStatus(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{
		"policy": "on-failure", "retry_delay": 1}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(2, 0)
	exited := time.Now()
	c := waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusRecovering})
	for _, x := range c {
		if x.Name == "app" && (x.AutoRecovery.NextRetryAt == nil || x.AutoRecovery.NextRetryAt.Before(exited)) {
			t.Errorf("next_retry_at: %v", x.AutoRecovery.NextRetryAt)
		}
	}
	waitEvents(t, e, "start app", 2, 5*time.Second)
	if d := time.Since(exited); d < 950*time.Millisecond {
		t.Errorf("restarted after %v, before retry_delay 1 s", d)
	}
}

func TestUnlessStoppedHonoursAPIStop(t *testing.T) {
	e := newFakeEngine()
	sys := stoppedThroughAPI(t, e, "unless-stopped")
	time.Sleep(100 * time.Millisecond)
	if n := countEvents(e, "start app"); n != 1 {
		t.Fatalf("restarted after an API stop: %d starts", n)
	}
	if err := sys.ContainerAction("app", "start"); err != nil {
		t.Fatalf("API start: %v", err)
	}
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(0, 0) // armed again: an exit restarts it
	waitEvents(t, e, "start app", 3, 5*time.Second)
}

func TestContainerActionErrors(t *testing.T) {
	e := newFakeEngine()
	e.failOn["app"] = "start"
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusFailed, "sys": messages.StatusStarted})
	var ae *messages.ActionError
	if err := sys.ContainerAction("sys", "stop"); !errors.As(err, &ae) || ae.Outcome != messages.NotAllowed {
		t.Errorf("stop of a system container: %v", err)
	}
	if err := sys.ContainerAction("nope", "stop"); !errors.As(err, &ae) || ae.Outcome != messages.NotFound {
		t.Errorf("unknown container: %v", err)
	}
	if err := sys.ContainerAction("app", "dance"); !errors.As(err, &ae) || ae.Outcome != messages.InvalidAction {
		t.Errorf("bad action: %v", err)
	}
	// The start failure is reported, not swallowed (upstream says 200).
	if err := sys.ContainerAction("app", "start"); !errors.As(err, &ae) || ae.Outcome != messages.StartFailed || !strings.Contains(ae.Detail, "exec /sbin/init") {
		t.Errorf("failing start: %v", err)
	}
	e.mu.Lock()
	delete(e.failOn, "app")
	e.mu.Unlock()
	if err := sys.ContainerAction("app", "restart"); err != nil {
		t.Errorf("restart from FAILED: %v", err)
	}
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	if err := sys.ContainerAction("app", "restart"); err != nil {
		t.Errorf("restart while running: %v", err)
	}
	if n := countEvents(e, "stop app"); n != 1 {
		t.Errorf("restart did not stop the running container: %v", e.Events())
	}
}

func TestResetWindowStartsOver(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{
		"policy": "on-failure", "max_retries": 1, "reset_window": 1}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(1, 0) // retry 1 (the last allowed)
	waitEvents(t, e, "start app", 2, 5*time.Second)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	time.Sleep(1100 * time.Millisecond) // runs longer than the window
	e.run("app").Exit(1, 0)
	waitEvents(t, e, "start app", 3, 5*time.Second) // counter reset: retried again
	if n := info(t, sys, "app"); n.AutoRecovery.CurrentRetries != 1 {
		t.Errorf("retries after reset: %d", n.AutoRecovery.CurrentRetries)
	}
}

func TestLegacyFallbackRestartsWithFloorBackoff(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, oneContainer(t, nil), e) // container policy, no auto_recovery
	start := time.Now()
	for i := 1; i <= 4; i++ {
		waitEvents(t, e, "start app", i, 5*time.Second)
		waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
		e.run("app").Exit(1, 0)
	}
	waitEvents(t, e, "start app", 5, 5*time.Second)
	// 100 + 200 + 400 + 800 ms of backoff at least.
	if d := time.Since(start); d < 1450*time.Millisecond {
		t.Errorf("4 legacy restarts took %v: no floor backoff", d)
	}
}

func TestSystemContainerGivingUpRequestsReboot(t *testing.T) {
	e := newFakeEngine()
	var reboots atomic.Int32
	sys := startSystemCfg(t, Config{State: oneContainer(t, nil), Engine: e, OnReboot: func(string) { reboots.Add(1) }})
	waitStatus(t, sys, map[string]messages.Status{"sys": messages.StatusStarted})
	e.run("sys").Exit(1, 0)
	waitStatus(t, sys, map[string]messages.Status{"sys": messages.StatusFailed})
	deadline := time.Now().Add(2 * time.Second)
	for reboots.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if reboots.Load() != 1 {
		t.Errorf("reboot requests: %d", reboots.Load())
	}
	if tree := sys.Tree(); tree.Status != "reboot-requested" {
		t.Errorf("root status %q", tree.Status)
	}
}

func TestGivingUpDuringUpdateRequestsRollback(t *testing.T) {
	e := newFakeEngine()
	var rollbacks, reboots atomic.Int32
	sys := startSystemCfg(t, Config{State: oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}),
		Engine: e, Trying: true,
		OnRollback: func(string) { rollbacks.Add(1) }, OnReboot: func(string) { reboots.Add(1) }})
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(1, 0)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusFailed})
	deadline := time.Now().Add(2 * time.Second)
	for rollbacks.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if rollbacks.Load() != 1 || reboots.Load() != 0 {
		t.Errorf("rollbacks %d reboots %d", rollbacks.Load(), reboots.Load())
	}
	if tree := sys.Tree(); tree.Status != "rollback-requested" || !strings.Contains(tree.LastFailure, "A container could not be started") {
		t.Errorf("root: %q %q", tree.Status, tree.LastFailure)
	}
}

func TestPanicInContainerActorKeepsContainer(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	pid := info(t, sys, "app").Pid
	sys.injectPanic(t, "app")
	time.Sleep(100 * time.Millisecond)
	c := info(t, sys, "app")
	if c.Status != messages.StatusStarted || c.Pid != pid {
		t.Errorf("after a panic: %s pid %d (was %d)", c.Status, c.Pid, pid)
	}
	if n := countEvents(e, "start app") + countEvents(e, "stop app"); n != 1 {
		t.Errorf("the container was replaced instead of re-adopted: %v", e.Events())
	}
	node := sys.Tree().Children[0].Children[0]
	if node.Path != "root/rev-0/app" || node.ActorRestarts != 1 {
		t.Errorf("tree does not show the actor restart: %+v", node)
	}
	// Still supervised: its exit is seen by the new incarnation.
	e.run("app").Exit(4, 0)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusFailed})
}

// A shutdown while a container waits for its retry cancels the retry and
// still finishes, and only after the dead run is released: a slow destroy
// held the unmount past the engine's close when the canceled retry's
// STOPPED was reported before the release (CI saw it once at full speed).
func TestShutdownDuringBackoff(t *testing.T) {
	e := newFakeEngine()
	e.slowDestroy["app"] = 200 * time.Millisecond
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "always", "retry_delay": 30}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(1, 0)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusRecovering})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatalf("shutdown during backoff: %v", err)
	}
	if ev := e.Events(); index(ev, "unmount app") < 0 {
		t.Errorf("app not released: %v", ev)
	}
}

// A stop that arrives while the container is being created waits for the
// creation and then undoes it: nothing the start made outlives the stop.
func TestStopDuringStart(t *testing.T) {
	e := newFakeEngine()
	e.startDly["app"] = 300 * time.Millisecond
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarting})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	ev := e.Events()
	for _, want := range []string{"start app", "stop app", "destroy app", "unmount app"} {
		if index(ev, want) < 0 {
			t.Errorf("shutdown finished without %q: %v", want, ev)
		}
	}
}

// An exit and what the revision made of it show together: GET /containers
// never has a container's last exit with the status it had before it
// exited (the decision used to reach the table only once the container
// actor had reported it back).
func TestExitAndOutcomeShowTogether(t *testing.T) {
	for _, tc := range []struct {
		code int
		want messages.Status
	}{{3, messages.StatusFailed}, {0, messages.StatusStopped}} {
		e := newFakeEngine()
		sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), e)
		waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
		done := make(chan struct{})
		go func() {
			time.Sleep(time.Millisecond)
			e.run("app").Exit(tc.code, 0)
			close(done)
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := info(t, sys, "app")
			if c.LastExit != nil {
				if c.Status != tc.want || c.LastExit.Code != tc.code {
					t.Errorf("exit %d: first seen as %s with exit %+v, want %s", tc.code, c.Status, *c.LastExit, tc.want)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("exit %d never shown: %+v", tc.code, c)
			}
		}
		<-done
	}
}

// A start asked while the run of an earlier failure is still being
// released (its destroy is slow) waits for the release: the new mount is
// made in the places the release unmounts (the real engine's rootfs and
// boot storage are under the container's name), so a mount made beside it
// lost its rootfs and storage to the release's unmount. A restart after
// that stops the new run and starts it again.
func TestStartWhileAnOldRunIsReleasedWaitsForIt(t *testing.T) {
	e, sys := slowTeardown(t)
	e.run("app").Exit(1, 0) // no recovery: the run is released, slowly
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusFailed})
	if n := countEvents(e, "destroy app"); n != 0 {
		t.Fatalf("the release ended before the start was asked (%d destroys): the test proves nothing", n)
	}
	if err := sys.ContainerAction("app", "start"); err != nil {
		t.Fatalf("start during the release: %v", err)
	}
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	ev := e.Events()
	second := slices.Index(ev[index(ev, "mount app")+1:], "mount app")
	if second < 0 || index(ev, "unmount app") < 0 || index(ev, "mount app")+1+second < index(ev, "unmount app") {
		t.Fatalf("the start mounted beside the release's unmount: %v", ev)
	}
	if err := sys.ContainerAction("app", "restart"); err != nil {
		t.Fatalf("restart: %v", err)
	}
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	if n := countEvents(e, "stop app"); n != 1 {
		t.Errorf("restart did not stop the running container: %v", e.Events())
	}
	if n := countEvents(e, "start app"); n != 3 {
		t.Errorf("%d starts, want 3: %v", n, e.Events())
	}
}

// A StartContainer, or a restart of the actor after a Go panic, while a
// start runs in the background is served by that start: before, each began
// a second start of the same mount, and the first run was torn down when
// its result came back stale (two creations of one container at once).
func TestStartDuringAStartStartsOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nudge func(sys *System, pid *actor.PID)
	}{
		{"StartContainer", func(sys *System, pid *actor.PID) { sys.sys.Root.Send(pid, &messages.StartContainer{}) }},
		{"panic", func(sys *System, pid *actor.PID) {
			sys.sys.Root.Send(pid, &injectedPanic{reason: "injected by the test"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEngine()
			e.startDly["app"] = 300 * time.Millisecond
			sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), e)
			waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarting})
			tc.nudge(sys, actor.NewPID(sys.sys.Address(), rootName+"/rev-0/app"))
			waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
			time.Sleep(500 * time.Millisecond) // a second start would be done by now
			if n, m := countEvents(e, "start app"), countEvents(e, "stop app"); n != 1 || m != 0 {
				t.Fatalf("%d starts and %d stops, want 1 and 0: %v", n, m, e.Events())
			}
			if c := info(t, sys, "app"); c.Status != messages.StatusStarted {
				t.Fatalf("app %s after the start, want STARTED", c.Status)
			}
		})
	}
}

// A stop asked while an earlier stop's teardown still runs (the revision
// sends one when a status queued before its STOPPING mark overwrote it)
// waits for that teardown: the container is STOPPED only once it is down
// and unmounted. Before, the second stop found nothing left to stop and
// reported STOPPED at once: a shutdown then went on to the pools and the
// engine with the container in its stop's grace.
func TestSecondStopWaitsForTheFirstTeardown(t *testing.T) {
	e := newFakeEngine()
	e.slowDestroy["app"] = 300 * time.Millisecond
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	pid := actor.NewPID(sys.sys.Address(), rootName+"/rev-0/app")
	sys.sys.Root.Send(pid, &messages.StopContainer{Timeout: time.Second})
	waitEvents(t, e, "stop app", 1, 5*time.Second)
	sys.sys.Root.Send(pid, &messages.StopContainer{Timeout: time.Second})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("app never STOPPED: %v", e.Events())
		}
		cs, err := sys.Containers()
		if err != nil {
			t.Fatal(err)
		}
		var st messages.Status
		for _, c := range cs {
			if c.Name == "app" {
				st = messages.Status(c.Status)
			}
		}
		if st != messages.StatusStopped {
			continue
		}
		if index(e.Events(), "unmount app") < 0 {
			t.Fatalf("app STOPPED before its teardown was done: %v", e.Events())
		}
		return
	}
}

// A container actor's failure is a system message: it reaches the
// revision ahead of the statuses the actor sent just before it, such as
// the STARTED of a run that exited at once. Such a status comes after the
// decision and must not undo it: before, the row of a container in its
// back-off read STARTED (an update could be judged up and committed), and
// a stopping revision asked a container it had given up to stop again.
func TestStatusOvertakenByTheFailureIsDropped(t *testing.T) {
	e := newFakeEngine()
	sys := inBackoff(t, e, 2)

	rev := actor.NewPID(sys.sys.Address(), rootName+"/rev-0")
	rows := func() map[string]messages.Status {
		t.Helper()
		res, err := sys.sys.Root.RequestFuture(rev, &messages.GetContainers{}, 5*time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]messages.Status{}
		for _, c := range res.(*messages.ContainersReply).Containers {
			got[c.Name] = messages.Status(c.Status)
		}
		return got
	}
	// The run's STARTED again, as if the failure had overtaken it: the
	// actor's third status, after INSTALLED and STARTING.
	sys.sys.Root.Send(rev, &messages.ContainerStatusChanged{Name: "app", Status: messages.StatusStarted, Pid: 4242, Seq: 3})
	if got := rows()["app"]; got != messages.StatusRecovering {
		t.Fatalf("after a status from before the exit: app %s, want RECOVERING", got)
	}
	// What the actor says after the decision still counts.
	if err := sys.ContainerAction("app", "stop"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStopped})
}

// A start through the API waits for the container to be up; one
// overtaken by a stop through the API, by the revision's own stop or by
// a restart of the revision after a panic is answered that it was
// canceled. Before, it was never answered: the request hung until its
// minute ran out (TestContainerInterleavings found it).
func TestStartOvertakenByAStopIsAnswered(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(sys *System) error
		want string
	}{
		{"API stop", func(sys *System) error { return sys.ContainerAction("app", "stop") }, "stopped through the API"},
		{"revision stop", func(sys *System) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return sys.Shutdown(ctx, "test")
		}, "the revision is stopping"},
		// The revision restarted after a panic knows nothing of the
		// start (and starts its containers afresh).
		{"revision panic", func(sys *System) error {
			rev := actor.NewPID(sys.sys.Address(), sys.Tree().Children[0].Path)
			sys.sys.Root.Send(rev, (*messages.ContainerStatusChanged)(nil))
			return nil
		}, "the revision restarted after an internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEngine()
			sys := stoppedThroughAPI(t, e, "no")
			e.mu.Lock()
			e.startDly["app"] = 500 * time.Millisecond
			e.mu.Unlock()
			started := make(chan error, 1)
			go func() { started <- sys.ContainerAction("app", "start") }()
			waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarting})
			if err := tc.stop(sys); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-started:
				var ae *messages.ActionError
				if !errors.As(err, &ae) || ae.Outcome != messages.Canceled || ae.Detail != tc.want {
					t.Fatalf("start overtaken by a stop: %v, want canceled: %s", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the start was never answered")
			}
			switch tc.name {
			case "revision panic":
				return
			case "API stop":
				waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStopped})
			}
			// STOPPED, and the shutdown's end, come after the teardown.
			e.mu.Lock()
			alive, mounted := e.alive["app"], e.mounted["app"]
			e.mu.Unlock()
			if alive != 0 || mounted != 0 {
				t.Errorf("%d runs and %d mounts of app left after the stop: %v", alive, mounted, e.Events())
			}
		})
	}
}

// A container actor that panics while it waits for its retry is
// restarted once the revision resumes it, and the new incarnation goes on
// with the start; a stop through the API during the back-off resumes it
// in order to settle it STOPPED. The decision then meets a start under
// way and must undo it. Before, it reported STOPPED at once and the start
// went on: the container ran after the stop was answered (or, had the
// start failed, sat in RECOVERING for good with nothing to retry it).
func TestStopDuringBackoffUndoesTheStartOfAPanicRestart(t *testing.T) {
	e := newFakeEngine()
	sys := inBackoff(t, e, 1)
	e.mu.Lock()
	e.startDly["app"] = 200 * time.Millisecond
	e.mu.Unlock()
	sys.injectPanic(t, "app") // queued: the actor is suspended for its back-off
	if err := sys.ContainerAction("app", "stop"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the start under way is over
	c := info(t, sys, "app")
	e.mu.Lock()
	alive, mounted := e.alive["app"], e.mounted["app"]
	e.mu.Unlock()
	if c.Status != messages.StatusStopped || alive != 0 || mounted != 0 {
		t.Fatalf("after a stop during the back-off: %s, %d runs and %d mounts alive; want STOPPED and none: %v", c.Status, alive, mounted, e.Events())
	}
	if err := sys.ContainerAction("app", "start"); err != nil {
		t.Fatalf("start after the stop: %v", err)
	}
}

// slowTeardown starts app (policy no) and makes its teardowns slow (a
// destroy takes 300 ms), for a test to act while one runs.
func slowTeardown(t *testing.T) (*fakeEngine, *System) {
	t.Helper()
	e := newFakeEngine()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.mu.Lock()
	e.slowDestroy["app"] = 300 * time.Millisecond
	e.mu.Unlock()
	return e, sys
}

// inBackoff starts app (on-failure, a minute's back-off) on e, and has
// its run exit with code: app is RECOVERING, its actor suspended.
func inBackoff(t *testing.T, e *fakeEngine, code int) *System {
	t.Helper()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{
		"policy": "on-failure", "retry_delay": 60}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	e.run("app").Exit(code, 0)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusRecovering})
	return sys
}

// A container given up while its dead run is released (a slow destroy)
// shows STOPPED or FAILED at once, but a stopping revision waits for the
// release before it calls the container down. Before, a shutdown closed
// the engine, and a non-reboot update mounted the container anew in the
// next revision, while the release still ran (TestUpdateInterleavings
// found the second).
func TestStopWaitsForTheReleaseOfAGivenUpContainer(t *testing.T) {
	for _, code := range []int{0, 1} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			e := newFakeEngine()
			policy := map[int]string{0: "on-failure", 1: "no"}[code]
			sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": policy}}), e)
			waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
			e.mu.Lock()
			e.slowDestroy["app"] = 300 * time.Millisecond
			e.mu.Unlock()
			e.run("app").Exit(code, 0)
			want := map[int]messages.Status{0: messages.StatusStopped, 1: messages.StatusFailed}[code]
			waitStatus(t, sys, map[string]messages.Status{"app": want})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := sys.Shutdown(ctx, "test"); err != nil {
				t.Fatal(err)
			}
			ev := e.Events()
			if u, c := index(ev, "unmount app"), index(ev, "close engine"); u < 0 || c < u {
				t.Fatalf("the engine closed before app's release was done: %v", ev)
			}
		})
	}
}

// stoppedThroughAPI starts app (of the given recovery policy) on e and
// stops it through the API: app is STOPPED.
func stoppedThroughAPI(t *testing.T, e *fakeEngine, policy string) *System {
	t.Helper()
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": policy}}), e)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	if err := sys.ContainerAction("app", "stop"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStopped})
	return sys
}

// A container in its recovery back-off shows in the tree as RECOVERING,
// with its retry and the failure that caused it. Its actor is suspended
// until the retry and cannot answer: before, the tree waited out 500 ms
// for it and showed it "unresponsive", the status of a hung actor.
func TestTreeShowsABackoffAsRecovering(t *testing.T) {
	e := newFakeEngine()
	sys := inBackoff(t, e, 3)
	tree := sys.Tree()
	var node *messages.Node
	var walk func(n *messages.Node)
	walk = func(n *messages.Node) {
		if n.Kind == "container" && strings.HasSuffix(n.Path, "/app") {
			node = n
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(tree)
	if node == nil {
		t.Fatalf("no container app in the tree: %+v", tree)
	}
	if node.Status != string(messages.StatusRecovering) {
		t.Errorf("app is %q (%s), want RECOVERING", node.Status, node.LastFailure)
	}
	if !strings.Contains(node.LastFailure, "code 3") {
		t.Errorf("last failure %q does not give the exit", node.LastFailure)
	}
	if node.Info["retry"] != "1" || node.Info["next_retry_at"] == "" || node.Info["group"] == "" {
		t.Errorf("info %v: want retry 1, next_retry_at and the group", node.Info)
	}
}
