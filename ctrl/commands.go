package ctrl

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// maxCommand is upstream's limit on a POST /commands body.
const maxCommand = 4096

// Upstream's messages for POST /commands.
const (
	msgNoCommand     = "No command found"
	msgCommandFormat = "Command has bad format"
	msgCommandBusy   = "A command is already in progress. Try again"
)

// Our own messages for POST /commands.
const (
	msgNoUpdates   = "Updates are not available: pantavisor runs without update storage"
	msgStorageBusy = "Storage is busy with an upload. Try again"
	msgNoRunning   = "No revision is running"
)

// Upstream's Retry-After, in seconds, for an update under test and for a
// command already in progress.
const (
	retryUpdating = 600
	retryBusy     = 120
)

// commandRequest is the body of POST /commands.
type commandRequest struct {
	Op      string `json:"op"`
	Payload string `json:"payload"`
}

// commandHandler carries out one op with its payload; it answers.
type commandHandler func(s *Server, w http.ResponseWriter, payload string)

// commandOps are upstream's ops (reference §7.3). Unlike upstream, which
// takes any prefix of a name (strncmp with the length of the op: "" runs
// the first op, "LOCAL_RUN" could never reach LOCAL_RUN_COMMIT's row if it
// came first), the op must be a whole name: an abbreviation is an unknown
// op. pvcontrol and every known client send whole names.
var commandOps = map[string]commandHandler{
	"LOCAL_RUN":        runCommand(false),
	"LOCAL_RUN_COMMIT": runCommand(true),
	"REBOOT_DEVICE":    powerCommand(false),
	"POWEROFF_DEVICE":  powerCommand(true),
	"MAKE_FACTORY":     (*Server).makeFactory,
	// Ours: an in-place upgrade of the supervisor (runtime/reaper).
	"REEXEC_SUPERVISOR": (*Server).reexecCommand,
	"RUN_GC":            (*Server).runGC,
	// Remote mode (Pantahub) is not implemented: the device is always in
	// local mode, where upstream refuses device metadata with 409.
	"UPDATE_METADATA": refuseCommand(http.StatusConflict, "UPDATE_METADATA: device metadata from the hub is not accepted in local mode"),
	// Upstream answers 409 when PV_CONTROL_REMOTE=0: here remote mode
	// does not exist.
	"GO_REMOTE": refuseCommand(http.StatusConflict, "GO_REMOTE: remote mode is not supported"),
	// Newer upstream scripts send it (pvcontrol cmd unclaim): with no hub
	// the device was never claimed.
	"UNCLAIM": refuseCommand(http.StatusConflict, "UNCLAIM: the device is not claimed: there is no hub"),
	// Upstream answers 409 when PV_DEBUG_SHELL=0: here there is no debug
	// shell, so no reboot is ever deferred for it.
	"DEFER_REBOOT": refuseCommand(http.StatusConflict, "DEFER_REBOOT: there is no debug shell to defer a reboot for"),
	"ENABLE_SSH":   refuseCommand(http.StatusNotImplemented, "ENABLE_SSH: there is no debug ssh server"),
	"DISABLE_SSH":  refuseCommand(http.StatusNotImplemented, "DISABLE_SSH: there is no debug ssh server"),
	// Upstream accepts these and then logs "unknown command ... Ignoring".
	"TRY_ONCE":       ignoreCommand("TRY_ONCE"),
	"LOCAL_APPLY":    ignoreCommand("LOCAL_APPLY"),
	"XCONNECT_GRAPH": ignoreCommand("XCONNECT_GRAPH"),
}

// postCommand runs one command. Upstream queues it for the state machine
// and answers at once; here it is carried out before the answer, so the
// client learns how it ended (a revision that cannot run is a 404 or 422,
// not a silent nothing). Like upstream, one command runs at a time: a
// second one meanwhile is answered 503 "A command is already in progress".
func (s *Server) postCommand(w http.ResponseWriter, r *http.Request, _ *call) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req commandRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.writeError(w, http.StatusBadRequest, msgCommandFormat)
		return
	}
	h, ok := commandOps[req.Op]
	if !ok {
		s.writeError(w, http.StatusBadRequest, msgNoCommand+": "+strconv.Quote(req.Op))
		return
	}
	if !s.cmdMu.TryLock() {
		s.writeBusy(w, retryBusy, msgCommandBusy)
		return
	}
	defer s.cmdMu.Unlock()
	s.log.Info("ctrl: command", "op", req.Op, "payload", req.Payload)
	h(s, w, req.Payload)
}

// runCommand is LOCAL_RUN (LOCAL_RUN_COMMIT with commit): start the
// update to the revision named by the payload.
func runCommand(commit bool) commandHandler {
	return func(s *Server, w http.ResponseWriter, rev string) {
		s.commandDone(w, "run "+rev, s.b.RunRevision(rev, commit))
	}
}

// powerCommand is REBOOT_DEVICE (POWEROFF_DEVICE with poweroff); the
// payload is the reason logged.
func powerCommand(poweroff bool) commandHandler {
	return func(s *Server, w http.ResponseWriter, reason string) {
		s.commandDone(w, "power", s.b.Power(poweroff, reason))
	}
}

// reexecCommand answers, then has the supervisor re-executed: the
// answer must leave before the process goes.
func (s *Server) reexecCommand(w http.ResponseWriter, reason string) {
	if s.reexec == nil {
		s.writeError(w, http.StatusNotImplemented, "REEXEC_SUPERVISOR: this supervisor cannot be re-executed (not started by pantavisor's PID 1)")
		return
	}
	writeOK(w)
	// Through the ResponseController: w is the server's trackWriter, no
	// http.Flusher itself, and an answer left in its buffer would go
	// with the process.
	if err := http.NewResponseController(w).Flush(); err != nil {
		s.log.Warn("ctrl: REEXEC_SUPERVISOR answer not flushed: the client may see the connection end", "err", err)
	}
	s.reexec(reason)
}

func refuseCommand(status int, msg string) commandHandler {
	return func(s *Server, w http.ResponseWriter, _ string) {
		s.writeError(w, status, msg)
	}
}

func ignoreCommand(op string) commandHandler {
	return func(s *Server, w http.ResponseWriter, _ string) {
		s.log.Info("ctrl: unknown command, ignoring", "op", op)
		writeOK(w)
	}
}

// commandDone answers 200, or the status for err (commandError).
func (s *Server) commandDone(w http.ResponseWriter, what string, err error) {
	if err == nil {
		writeOK(w)
		return
	}
	status, msg := commandError(err)
	switch {
	case status == http.StatusServiceUnavailable:
		s.log.Info("ctrl: command refused", "command", what, "err", err)
		s.writeBusy(w, retryUpdating, msg)
		return
	case status >= 500:
		s.log.Error("ctrl: command failed", "command", what, "err", err)
	default:
		s.log.Info("ctrl: command refused", "command", what, "err", err)
	}
	s.writeError(w, status, msg)
}

// writeBusy answers 503 with msg and a Retry-After of retry seconds.
func (s *Server) writeBusy(w http.ResponseWriter, retry int, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	s.writeError(w, http.StatusServiceUnavailable, msg)
}

// commandStorage is what the storage commands start from: the storage and
// the revisions in use. When either is missing it has answered and ok is
// false.
func (s *Server) commandStorage(w http.ResponseWriter, what string) (*Storage, *messages.RevisionsReply, bool) {
	st, ok := s.storageOr(w)
	if !ok {
		return nil, nil, false
	}
	revs, err := s.b.Revisions()
	if err != nil {
		s.commandDone(w, what, err)
		return nil, nil, false
	}
	return st, revs, true
}

// commandError is the HTTP status and message for a command that did not
// succeed: 503 while an update is under test, 404 for a revision never
// uploaded, 422 for a bad name or a state that does not validate, 409
// with the reason for a bootloader that is unusable, 500 otherwise.
func commandError(err error) (int, string) {
	switch {
	case errors.Is(err, update.ErrUpdateOngoing):
		return http.StatusServiceUnavailable, update.MsgUpdateOngoing
	case errors.Is(err, update.ErrUnknownRevision), errors.Is(err, storage.ErrNoTrail):
		return http.StatusNotFound, msgNoResource
	case errors.Is(err, update.ErrInvalidRevision), errors.Is(err, storage.ErrBadRevision), errors.Is(err, storage.ErrBadState),
		errors.Is(err, storage.ErrObjectMissing), errors.Is(err, storage.ErrBadChecksum):
		return http.StatusUnprocessableEntity, err.Error()
	case errors.Is(err, storage.ErrNoSpace), errors.Is(err, storage.ErrReadOnly):
		code, msg, _ := unwritable(err)
		return code, msg
	case errors.Is(err, messages.ErrNoUpdates):
		return http.StatusInternalServerError, msgNoUpdates
	case errors.Is(err, bootloader.ErrUnusable):
		// Safe mode, for a bootloader that cannot be set up: nothing
		// that reads or writes its variables can be done until it is
		// fixed, which the error says how (it was "Internal error").
		return http.StatusConflict, err.Error()
	}
	return http.StatusInternalServerError, msgInternal
}

// runGC is RUN_GC: collectGarbage, answered 200 with no body.
func (s *Server) runGC(w http.ResponseWriter, _ string) {
	if _, ok := s.collectGarbage(w); ok {
		writeOK(w)
	}
}

// gcJSON is the answer to POST /storage/gc, as upstream's ctrl_storage_gc
// gives it: the bytes freed.
type gcJSON struct {
	Reclaimed int64 `json:"reclaimed"`
}

// postStorageGC is POST /storage/gc, which newer upstream scripts send for
// `pvcontrol storage gc`: RUN_GC under its own path, one command at a
// time like the others, answered with the bytes freed.
func (s *Server) postStorageGC(w http.ResponseWriter, _ *http.Request, _ *call) {
	if !s.cmdMu.TryLock() {
		s.writeBusy(w, retryBusy, msgCommandBusy)
		return
	}
	defer s.cmdMu.Unlock()
	if rep, ok := s.collectGarbage(w); ok {
		s.writeJSON(w, http.StatusOK, gcJSON{Reclaimed: rep.Bytes})
	}
}

// collectGarbage removes every revision but those in use (running,
// committed, tried) and the factory "0", then every object no remaining
// revision refers to. It waits for no upload: while one is being written
// it is answered 503 "Storage is busy", as the upload's object would go.
// On failure it has answered and ok is false; on success the caller
// answers.
func (s *Server) collectGarbage(w http.ResponseWriter) (rep storage.GCReport, ok bool) {
	st, revs, ok := s.commandStorage(w, "gc")
	if !ok {
		return rep, false
	}
	if !s.storeMu.TryLock() {
		s.writeBusy(w, retryBusy, msgStorageBusy)
		return rep, false
	}
	defer s.storeMu.Unlock()
	keep := append(revs.Revisions(), "0")
	rep, err := st.Layout.GC(storage.GCOptions{Keep: keep})
	s.log.Info("ctrl: storage garbage collected", "keep", keep, "revisions", rep.Revisions, "objects", len(rep.Objects), "bytes", rep.Bytes)
	if err != nil {
		s.commandDone(w, "gc", err)
		return rep, false
	}
	return rep, true
}

// makeFactory makes the revision named by the payload (the running one
// when empty) the factory revision "0": its state JSON replaces trail 0
// whole (storage.ReplaceTrail: a crash leaves the old trail 0 or the new
// one), then "0" is run with a reboot, as LOCAL_RUN_COMMIT. Upstream
// refuses it on a device claimed by the hub (409); here there is no hub.
// Beware: "0" is replaced even when it is the committed revision, and
// stays replaced if running it is then refused.
func (s *Server) makeFactory(w http.ResponseWriter, rev string) {
	st, revs, ok := s.commandStorage(w, "make factory")
	if !ok {
		return
	}
	if revs.Updating {
		s.commandDone(w, "make factory", update.ErrUpdateOngoing)
		return
	}
	if rev == "" {
		if rev = revs.Running; rev == "" {
			s.writeError(w, http.StatusConflict, msgNoRunning)
			return
		}
	}
	if rev != "0" {
		if err := s.copyRevision(st, rev, "0"); err != nil {
			s.commandDone(w, "make factory from "+rev, err)
			return
		}
		s.log.Info("ctrl: factory revision replaced", "from", rev)
	}
	s.commandDone(w, "run factory revision", s.b.RunRevision("0", true))
}

// copyRevision installs from's state JSON as revision to, replacing it.
func (s *Server) copyRevision(st *Storage, from, to string) error {
	if err := storage.CheckRev(from); err != nil {
		return errors.Join(update.ErrInvalidRevision, err)
	}
	data, err := st.Layout.ReadState(from)
	if err != nil {
		return err
	}
	s.storeMu.RLock()
	defer s.storeMu.RUnlock()
	return st.Layout.ReplaceTrail(to, data, storage.InstallOptions{})
}
