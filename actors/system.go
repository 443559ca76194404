package actors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

func init() {
	// protoactor's process registry (built by actor.NewActorSystem) is
	// 1024 concurrent maps of cmap.SHARD_COUNT shards each: with the
	// default 32, that is 32768 Go maps for a tree of a few dozen actors,
	// paid in heap and boot time (ARCHITECTURE.md, Performance notes) and
	// in GC work for as long as the device runs. One shard per map keeps
	// 1024-way striping, far more than the actor count needs. SHARD_COUNT
	// is read at every access and must be set before the first map is
	// made: no map exists before a system is built, and nothing else in
	// the binary uses the package.
	cmap.SHARD_COUNT = 1
}

// System is a running actor tree with the calls the control socket needs.
// Its methods are safe for concurrent use and never block an actor: they wait
// on futures from the caller's goroutine.
type System struct {
	sys     *actor.ActorSystem
	root    *actor.PID
	timeout time.Duration
	updates Updates
	check   func(rev string, st *state.State) error
	board   *board
	// revisionGrace is how long the revision actor may stay silent
	// before the probe fails (Alive); revSilence since when it is.
	revisionGrace time.Duration
	revSilence    silence
}

// Start builds the actor system and spawns root, which starts the revision.
func Start(cfg Config) (*System, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.HandoverTimeout == 0 {
		cfg.HandoverTimeout = DefaultHandoverTimeout
	}
	protoLog := slog.New(levelFilter{h: cfg.Log.Handler(), min: slog.LevelWarn}).With("lib", "protoactor")
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return protoLog }))
	// Root's configuration and update state outlive its incarnations.
	cfg.board = &board{}
	shared, up := cfg, &rootUpdate{}
	if cfg.Trying && cfg.TryProgress != nil && cfg.Updates != nil {
		// A try resumed by a supervisor started again may be a
		// non-reboot one: its progress says so.
		msg := cfg.TryProgress.Msg
		reboot := msg != storage.MsgTransition && msg != storage.MsgTestingNonReboot
		up.try = &tryRun{rev: cfg.Rev, progress: *cfg.TryProgress, reboot: reboot, resumed: cfg.Adopted != nil}
	}
	props := actor.PropsFromProducer(func() actor.Actor { return &rootActor{cfg: &shared, up: up} },
		actor.WithGuardian(guardian{log: cfg.Log, up: up}))
	root, err := sys.Root.SpawnNamed(props, rootName)
	if err != nil {
		return nil, fmt.Errorf("spawn root actor: %w", err)
	}
	return &System{sys: sys, root: root, timeout: 2 * time.Second, updates: cfg.Updates, check: cfg.CheckRevision, board: cfg.board,
		revisionGrace: max(cfg.StopTimeout, containerStopGrace) + revisionGraceMargin}, nil
}

// revisionGraceMargin is what the revision actor's silence may last
// beyond a container's stop grace (Alive): its own restart, and the
// teardown that follows a container's SIGKILL.
const revisionGraceMargin = 10 * time.Second

func (s *System) request(msg any) (any, error) {
	res, err := s.sys.Root.RequestFuture(s.root, msg, s.timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("ask root: %w", err)
	}
	return res, nil
}

// Containers returns GET /containers.
func (s *System) Containers() ([]messages.ContainerInfo, error) {
	if cs, ok := s.board.containers(); ok {
		return cs, nil
	}
	res, err := s.request(&messages.GetContainers{})
	if err != nil {
		return nil, err
	}
	reply, ok := res.(*messages.ContainersReply)
	if !ok {
		return nil, fmt.Errorf("unexpected reply %T", res)
	}
	return reply.Containers, nil
}

// XconnectGraph returns GET /xconnect-graph: the running revision's links
// (empty when no revision runs).
func (s *System) XconnectGraph() ([]messages.LinkInfo, error) {
	if ls := s.board.links(); ls != nil {
		return ls, nil
	}
	return []messages.LinkInfo{}, nil
}

// Groups returns GET /groups.
func (s *System) Groups() ([]messages.GroupInfo, error) {
	if gs, ok := s.board.groups(); ok {
		return gs, nil
	}
	res, err := s.request(&messages.GetGroups{})
	if err != nil {
		return nil, err
	}
	reply, ok := res.(*messages.GroupsReply)
	if !ok {
		return nil, fmt.Errorf("unexpected reply %T", res)
	}
	return reply.Groups, nil
}

// Signal delivers POST /signal from a container. A refusal is a
// *messages.SignalError saying why.
func (s *System) Signal(container, typ, payload string) error {
	res, err := s.request(&messages.SignalContainer{Name: container, Type: typ, Payload: payload})
	if err != nil {
		return fmt.Errorf("signal %q from container %s: %w", typ, container, err)
	}
	reply, ok := res.(*messages.SignalResult)
	if !ok {
		return fmt.Errorf("signal %q from container %s: unexpected reply %T", typ, container, res)
	}
	if reply.Refusal != messages.SignalAccepted {
		return &messages.SignalError{Container: container, Type: typ, Refusal: reply.Refusal, Detail: reply.Detail}
	}
	return nil
}

// ContainerAction carries out PUT /containers/{name} (start, stop,
// restart). A start waits for the outcome, so a failure is reported. An
// outcome other than done is a *messages.ActionError; an error of any other
// type means the tree did not answer.
func (s *System) ContainerAction(name, action string) error {
	res, err := s.sys.Root.RequestFuture(s.root, &messages.ContainerAction{Name: name, Action: action}, time.Minute).Result()
	if err != nil {
		return fmt.Errorf("%s container %s: %w", action, name, err)
	}
	reply, ok := res.(*messages.ActionResult)
	if !ok {
		return fmt.Errorf("%s container %s: unexpected reply %T", action, name, res)
	}
	if reply.Outcome != messages.Done {
		return &messages.ActionError{Container: name, Action: action, Outcome: reply.Outcome, Detail: reply.Detail}
	}
	return nil
}

// Tree describes every actor, depth first. An actor that does not answer
// within the per-actor timeout appears with status "unresponsive": a blocked
// actor is exactly what this view must reveal.
func (s *System) Tree() *messages.Node {
	return s.describe(s.root.Id)
}

// HangRoot blocks the root actor for good. It exists for one test: the
// QEMU boot test (_PV_TEST_HANG_ROOT) proves with it that a hung actor tree
// stops the watchdog's kicks and the board resets.
func (s *System) HangRoot() { s.sys.Root.Send(s.root, hang{}) }

// hang blocks the actor that receives it (root or a revision) until until
// is closed; nil blocks it for good. It exists for tests of the watchdog's
// probe (HangRoot).
type hang struct{ until <-chan struct{} }

// Alive reports whether the actors that carry the device answer before ctx
// ends: what the watchdog asks before each kick. Root, which carries
// updates and the control socket's commands, must answer every time. The
// revision actor under it supervises the containers: one that no longer
// answers restarts no container that fails, starts no group and stops
// nothing, while root, asked alone, answered for it. But it may be
// silent for a while without a hang: restarted after a Go panic, it takes
// no message until its children have stopped, and a container actor
// stops its container within the stop grace (SIGTERM, then SIGKILL); a
// message that reaches it as it stops for good is dropped without a
// reply. So it fails the probe only once it has not answered for
// revisionGrace, longer than any of those. Container actors are not asked:
// theirs wait on their containers for as long as a start or stop takes.
func (s *System) Alive(ctx context.Context) error {
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	n, err := s.alive(ctx, s.root, "root actor", deadline)
	if err != nil {
		return err
	}
	// Root names its running revision actor, none in safe mode.
	for _, id := range n.ChildIDs {
		_, err := s.alive(ctx, actor.NewPID(s.sys.Address(), id), "revision actor "+id, deadline)
		if err == nil || errors.Is(err, actor.ErrDeadLetter) {
			continue // a dead letter: stopped since root answered, a transition's end
		}
		if silent := s.revSilence.silentFor(time.Now()); silent >= s.revisionGrace {
			return fmt.Errorf("%w, and has not answered for %v", err, silent.Round(time.Millisecond))
		}
		return nil // silent, not yet for long
	}
	s.revSilence.answered()
	return nil
}

// silence tracks since when an actor has not answered the probe.
type silence struct {
	mu   sync.Mutex
	from time.Time // zero: it answered the last probe
}

// silentFor returns how long the actor has not answered, now included.
func (s *silence) silentFor(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.from.IsZero() {
		s.from = now
	}
	return now.Sub(s.from)
}

// answered notes that it answered.
func (s *silence) answered() {
	s.mu.Lock()
	s.from = time.Time{}
	s.mu.Unlock()
}

// alive asks pid to describe itself, waiting until deadline, or until
// ctx is cancelled: the watchdog cancels a probe in flight when a phase
// disarms it, and a probe may run most of the watchdog's timeout.
func (s *System) alive(ctx context.Context, pid *actor.PID, what string, deadline time.Time) (*messages.Node, error) {
	timeout := time.Until(deadline)
	if timeout <= 0 {
		return nil, fmt.Errorf("%s: %w", what, context.DeadlineExceeded)
	}
	f := s.sys.Root.RequestFuture(pid, &messages.Describe{}, timeout)
	type answer struct {
		res any
		err error
	}
	// Result blocks until the answer or the future's own timeout: it
	// ends by deadline whatever happens, so this goroutine does too.
	ch := make(chan answer, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- answer{err: fmt.Errorf("panic: %v", p)}
			}
		}()
		res, err := f.Result()
		ch <- answer{res, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", what, ctx.Err())
	}
	res, err := a.res, a.err
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	n, ok := res.(*messages.Node)
	if !ok {
		return nil, fmt.Errorf("%s answered %T", what, res)
	}
	return n, nil
}

func (s *System) describe(id string) *messages.Node {
	pid := actor.NewPID(s.sys.Address(), id)
	res, err := s.sys.Root.RequestFuture(pid, &messages.Describe{}, 500*time.Millisecond).Result()
	n, ok := res.(*messages.Node)
	if err != nil || !ok {
		return &messages.Node{Path: id, Status: "unresponsive", LastFailure: fmt.Sprint(err)}
	}
	for _, c := range n.ChildIDs {
		if d := n.Described[c]; d != nil {
			n.Children = append(n.Children, d)
			continue
		}
		n.Children = append(n.Children, s.describe(c))
	}
	return n
}

// Shutdown stops every container in reverse group order and waits for it,
// or for ctx to end.
func (s *System) Shutdown(ctx context.Context, reason string) error {
	timeout := time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	res, err := s.sys.Root.RequestFuture(s.root, &messages.Shutdown{Reason: reason}, timeout).Result()
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if _, ok := res.(*messages.ShutdownDone); !ok {
		return fmt.Errorf("shutdown: unexpected reply %T", res)
	}
	return nil
}

// levelFilter drops records below min; protoactor logs every supervision
// step at Info, which would drown the device's own log.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(n), min: f.min}
}

// RunRevision starts the update to rev (POST /commands LOCAL_RUN; commit:
// LOCAL_RUN_COMMIT, which forces a reboot). It returns once the update is
// installed, before the transition. Refusals wrap update's sentinels:
// ErrUpdateOngoing (checked first, as upstream answers 503 before reading
// anything), ErrInvalidRevision, ErrUnknownRevision; with no storage it
// wraps ErrNoUpdates. The state is loaded here, in the caller's goroutine:
// loading may hash objects, which no actor may wait for.
func (s *System) RunRevision(rev string, commit bool) error {
	if s.updates == nil {
		return fmt.Errorf("run %s: %w", rev, ErrNoUpdates)
	}
	revs, err := s.Revisions()
	if err != nil {
		return fmt.Errorf("run %s: %w", rev, err)
	}
	facts := update.RunFacts{Exists: true}
	if revs.Updating {
		facts.Tried = &storage.Progress{Status: storage.StatusInProgress}
	}
	var st *state.State
	if err := update.Run(rev, facts); err != nil { // ongoing, bad name
		return err
	}
	st, err = s.updates.Load(rev)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		facts.Exists = false
	case err != nil:
		facts.Invalid = err
	case s.check != nil:
		facts.Invalid = s.check(rev, st)
	}
	if err := update.Run(rev, facts); err != nil {
		return err
	}
	res, err := s.sys.Root.RequestFuture(s.root, &runRevision{Rev: rev, State: st, Commit: commit}, installWait).Result()
	if err != nil {
		return fmt.Errorf("run %s: %w", rev, err)
	}
	reply, ok := res.(*messages.RunResult)
	if !ok {
		return fmt.Errorf("run %s: unexpected reply %T", rev, res)
	}
	return reply.Err
}

// installWait is how long RunRevision waits for the install: root stays
// free meanwhile (installRun), and an rpiab install writes a boot image,
// minutes on a slow SD card. Past it the caller is told so, and the
// update goes on.
const installWait = 30 * time.Minute

// Power reboots (or powers off) the device: POST /commands REBOOT_DEVICE
// and POWEROFF_DEVICE. It is refused with update.ErrUpdateOngoing while an
// update is under test.
func (s *System) Power(poweroff bool, reason string) error {
	res, err := s.request(&messages.PowerRequest{Poweroff: poweroff, Reason: reason})
	if err != nil {
		return err
	}
	reply, ok := res.(*messages.PowerResult)
	if !ok {
		return fmt.Errorf("power request: unexpected reply %T", res)
	}
	return reply.Err
}

// Revisions names the revisions in use (running, committed, tried) and
// whether an update is under test.
func (s *System) Revisions() (*messages.RevisionsReply, error) {
	res, err := s.request(&messages.GetRevisions{})
	if err != nil {
		return nil, err
	}
	reply, ok := res.(*messages.RevisionsReply)
	if !ok {
		return nil, fmt.Errorf("revisions: unexpected reply %T", res)
	}
	if reply.Err != nil {
		// Fail closed: without the committed revision a GC would
		// remove the one a rollback boots.
		return nil, fmt.Errorf("revisions: %w", reply.Err)
	}
	return reply, nil
}

// ErrNoUpdates: the tree runs without storage (Config.Updates nil), so it
// cannot run another revision. It is messages.ErrNoUpdates, for ctrl.
var ErrNoUpdates = messages.ErrNoUpdates
