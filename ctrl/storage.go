package ctrl

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// Storage is the device storage behind the update endpoints (/objects and
// /steps). Their handlers read and write it directly rather than through
// the Backend: an object upload is streamed from the socket to the disk,
// where a message to the actor tree would have to carry it whole.
type Storage struct {
	// Layout is the storage directory (objects/, trails/).
	Layout storage.Layout
	// State is how an uploaded state JSON is validated (AppEngine skips
	// the bsp, as the running pantavisor does).
	State state.Options
	// MaxObject is the largest object PUT /objects accepts, in bytes;
	// DefaultMaxObject when 0. Free space is checked by the writes
	// themselves; this only bounds a runaway upload.
	MaxObject int64
	// PutRecord is a file, on the run tmpfs, in which the server keeps
	// its record of the objects put and named by no step since (the
	// automatic GC keeps them): a supervisor PID 1 starts again between
	// an update's objects and its step reads it back. In memory only
	// when "".
	PutRecord string
}

// DefaultMaxObject is the largest object accepted when Storage.MaxObject is
// not set: larger than any root filesystem image we expect.
const DefaultMaxObject int64 = 8 << 30

// maxStateJSON is the largest state JSON PUT /steps/locals/{name} accepts.
const maxStateJSON = 4 << 20

// maxCommitMsg is upstream's limit on a commit message.
const maxCommitMsg = 256

// bodyObject is the maxBody of the object upload route: the limit is the
// server's MaxObject, known only at run time.
const bodyObject int64 = -1

// Upstream's messages for the storage endpoints.
const (
	msgBadObjectName = "Request has bad object name"
	msgShortBody     = "Request body shorter than its Content-Length"
	msgBadChecksum   = "Object has bad checksum"
	msgNoSpace       = "Not enough disk space available"
	msgNoResource    = "Resource does not exist"
	msgNoCommitMsg   = "No commit message"
	msgBadStateJSON  = "Parser: State JSON has bad format"
	msgSecureboot    = "Secureboot"
)

// Our own messages for the storage endpoints.
const (
	msgNoStorage   = "Storage not available"
	msgBadRevName  = "Request has bad revision name"
	msgTrailExists = "Revision already exists"
	msgReadOnly    = "Storage is read-only"
)

// unwritable is the answer to a write the storage cannot take: 507 (the
// server "is unable to store the representation"), with the cause the user
// acts on, full or read-only; ok is false for any other error.
func unwritable(err error) (code int, msg string, ok bool) {
	switch {
	case errors.Is(err, storage.ErrNoSpace):
		return http.StatusInsufficientStorage, msgNoSpace, true
	case errors.Is(err, storage.ErrReadOnly):
		return http.StatusInsufficientStorage, msgReadOnly, true
	}
	return 0, "", false
}

// SetStorage gives the server the device storage; without it the /objects
// and /steps endpoints answer 500 "Storage not available". It must be
// called before Serve.
func (s *Server) SetStorage(st Storage) {
	if st.MaxObject <= 0 {
		st.MaxObject = DefaultMaxObject
	}
	s.store = &st
	s.loadPutRecord(st.PutRecord)
}

// bodyLimit is the largest body route rt accepts on this server.
func (s *Server) bodyLimit(rt *route) int64 {
	if rt.maxBody != bodyObject {
		return rt.maxBody
	}
	if s.store == nil {
		return 0
	}
	return s.store.MaxObject
}

// storageOr answers 500 when the server has no storage and returns false.
func (s *Server) storageOr(w http.ResponseWriter) (*Storage, bool) {
	if s.store == nil {
		s.writeError(w, http.StatusInternalServerError, msgNoStorage)
		return nil, false
	}
	return s.store, true
}

// objectJSON is one entry of GET /objects; upstream gives the size as a
// string.
type objectJSON struct {
	SHA256 string `json:"sha256"`
	Size   string `json:"size"`
}

func (s *Server) getObjects(w http.ResponseWriter, _ *http.Request, _ *call) {
	st, ok := s.storageOr(w)
	if !ok {
		return
	}
	objs, err := st.Layout.ListObjects()
	if err != nil {
		s.log.Error("ctrl: list objects", "err", err)
		s.writeError(w, http.StatusInternalServerError, "Cannot list objects")
		return
	}
	out := make([]objectJSON, len(objs))
	for i, o := range objs {
		out[i] = objectJSON{o.SHA, strconv.FormatInt(o.Size, 10)}
	}
	s.writeJSON(w, http.StatusOK, out)
}

// putObject streams the body into the object store; the object is
// published only when the content hashes to its name. An object already
// stored and verified is not rewritten: the body is read and dropped.
func (s *Server) putObject(w http.ResponseWriter, r *http.Request, c *call) {
	st, ok := s.storageOr(w)
	if !ok {
		return
	}
	sha := c.args[0]
	if !storage.IsSHA256(sha) {
		s.writeError(w, http.StatusBadRequest, msgBadObjectName)
		return
	}
	// An upload defers the threshold GC (space.go).
	s.uploaded()
	// Before the storage is held: the GC that may make room needs it
	// alone. An object already stored needs no room.
	var cl *claim
	if r.ContentLength > 0 && !stored(st.Layout, sha) {
		var verdict admitted
		cl, verdict = s.admit(r.Context(), st, sha, r.ContentLength)
		switch verdict {
		case admitFull:
			w.Header().Set("Connection", "close")
			s.writeError(w, http.StatusInsufficientStorage, msgNoSpace)
			return
		case admitGCBusy:
			w.Header().Set("Connection", "close")
			s.writeBusy(w, retryBusy, msgGCBusy)
			return
		}
		defer s.release(cl)
	}
	// RUN_GC is refused while a write holds the storage.
	s.storeMu.RLock()
	defer s.storeMu.RUnlock()
	body := &reserveGuard{r: r.Body, length: r.ContentLength, claim: cl, room: func() (int64, error) {
		reserved, _, _ := s.spaceSettings()
		sp, err := storage.StatSpace(st.Layout.Root)
		return sp.Available(reserved) - s.othersClaimed(cl), err
	}}
	existed, err := st.Layout.PutObject(sha, body, st.MaxObject)
	if err == nil && existed {
		// Draining lets the client finish sending and keeps the
		// connection usable; a failure only costs the connection.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			w.Header().Set("Connection", "close")
		}
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.Is(err, storage.ErrBadChecksum):
			s.log.Info("ctrl: object refused", "sha256", sha, "err", err)
			s.writeError(w, http.StatusUnprocessableEntity, msgBadChecksum)
		case errors.Is(err, storage.ErrNoSpace), errors.Is(err, storage.ErrReadOnly):
			s.log.Warn("ctrl: object refused", "sha256", sha, "err", err)
			// The rest of the body is not read.
			w.Header().Set("Connection", "close")
			code, msg, _ := unwritable(err)
			s.writeError(w, code, msg)
		case errors.As(err, &tooLarge), errors.Is(err, storage.ErrTooLarge):
			w.Header().Set("Connection", "close")
			s.writeError(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		case errors.Is(err, storage.ErrBadObjectName):
			s.writeError(w, http.StatusBadRequest, msgBadObjectName)
		case errors.Is(err, io.ErrUnexpectedEOF):
			// The client sent less than its Content-Length: its fault,
			// and nothing was published.
			w.Header().Set("Connection", "close")
			s.writeError(w, http.StatusBadRequest, msgShortBody)
		default:
			// Most often the client went away mid-upload; nothing was
			// published.
			s.log.Warn("ctrl: object not stored", "sha256", sha, "err", err)
			s.writeError(w, http.StatusInternalServerError, "Cannot store object")
		}
		return
	}
	s.uploaded()
	s.objectPut(sha)
	s.log.Info("ctrl: object stored", "sha256", sha, "existed", existed)
	writeOK(w)
}

// stored reports whether object sha is stored and marked verified: a put
// of it writes nothing.
func stored(l storage.Layout, sha string) bool {
	fi, err := os.Stat(l.Object(sha))
	return err == nil && storage.Verified(fi)
}

// getObject streams a stored object. An object the device does not hold
// is upstream's 400 "Request has bad object name" (ctrl_objects_send), not
// a 404: upstream's clients know that answer.
func (s *Server) getObject(w http.ResponseWriter, _ *http.Request, c *call) {
	st, ok := s.storageOr(w)
	if !ok {
		return
	}
	sha := c.args[0]
	if !storage.IsSHA256(sha) {
		s.writeError(w, http.StatusBadRequest, msgBadObjectName)
		return
	}
	f, err := os.Open(st.Layout.Object(sha))
	if errors.Is(err, fs.ErrNotExist) {
		s.writeError(w, http.StatusBadRequest, msgBadObjectName)
		return
	}
	if err != nil {
		s.log.Error("ctrl: open object", "sha256", sha, "err", err)
		s.writeError(w, http.StatusInternalServerError, msgInternal)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.log.Error("ctrl: stat object", "sha256", sha, "err", err)
		s.writeError(w, http.StatusInternalServerError, msgInternal)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		s.log.Info("ctrl: object download cut", "sha256", sha, "err", err)
	}
}

// stepJSON is one entry of GET /steps. Progress is {} when the revision
// has none, as upstream answers.
type stepJSON struct {
	Name      string `json:"name"`
	Date      string `json:"date"`
	CommitMsg string `json:"commitmsg"`
	Progress  any    `json:"progress"`
}

func (s *Server) getSteps(w http.ResponseWriter, _ *http.Request, _ *call) {
	st, ok := s.storageOr(w)
	if !ok {
		return
	}
	steps, err := st.Layout.Steps()
	if err != nil {
		s.log.Error("ctrl: list steps", "err", err)
		s.writeError(w, http.StatusInternalServerError, "Cannot list steps")
		return
	}
	out := make([]stepJSON, len(steps))
	for i, step := range steps {
		out[i] = stepJSON{
			Name:      step.Name,
			Date:      step.Date.UTC().Format("2006-01-02T15:04:05Z"),
			CommitMsg: step.CommitMsg,
			Progress:  struct{}{},
		}
		if step.Progress != nil {
			out[i].Progress = step.Progress
		}
	}
	s.writeJSON(w, http.StatusOK, out)
}

// stepRev is the revision a /steps route names: its argument, under
// locals/ for the locals routes; "current" is the revision trails/current
// points at. When there is no storage or the name is no revision it has
// answered (500, 404) and ok is false.
func (s *Server) stepRev(w http.ResponseWriter, c *call, local bool) (st *Storage, rev string, ok bool) {
	if st, ok = s.storageOr(w); !ok {
		return nil, "", false
	}
	rev = c.args[0]
	if local {
		rev = "locals/" + rev
	} else if rev == "current" {
		rev = st.Layout.CurrentRev()
	}
	if storage.CheckRev(rev) != nil {
		s.writeError(w, http.StatusNotFound, msgNoResource)
		return nil, "", false
	}
	return st, rev, true
}

// stepHandler is a /steps handler for the revisions of one kind.
type stepHandler func(s *Server, w http.ResponseWriter, r *http.Request, c *call, local bool)

// remoteStep and localStep make the route handlers of /steps/{rev}/... and
// /steps/locals/{name}/... from one stepHandler.
func remoteStep(h stepHandler) handler {
	return func(s *Server, w http.ResponseWriter, r *http.Request, c *call) { h(s, w, r, c, false) }
}

func localStep(h stepHandler) handler {
	return func(s *Server, w http.ResponseWriter, r *http.Request, c *call) { h(s, w, r, c, true) }
}

func (s *Server) getStep(w http.ResponseWriter, _ *http.Request, c *call, local bool) {
	st, rev, ok := s.stepRev(w, c, local)
	if !ok {
		return
	}
	data, err := st.Layout.ReadState(rev)
	if errors.Is(err, storage.ErrNoTrail) {
		s.writeError(w, http.StatusNotFound, msgNoResource)
		return
	}
	if err != nil {
		s.log.Error("ctrl: read state", "rev", rev, "err", err)
		s.writeError(w, http.StatusInternalServerError, msgInternal)
		return
	}
	// As stored, byte for byte: the client may hash or sign it.
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func (s *Server) getProgress(w http.ResponseWriter, _ *http.Request, c *call, local bool) {
	st, rev, ok := s.stepRev(w, c, local)
	if !ok {
		return
	}
	p, err := st.Layout.ReadProgress(rev)
	if errors.Is(err, fs.ErrNotExist) {
		s.writeError(w, http.StatusNotFound, msgNoResource)
		return
	}
	if err != nil {
		s.log.Error("ctrl: read progress", "rev", rev, "err", err)
		s.writeError(w, http.StatusInternalServerError, msgInternal)
		return
	}
	s.writeJSON(w, http.StatusOK, p)
}

// putCommitMsg reads the body before it resolves the revision, as before:
// an empty message is a 400 whatever the name.
func (s *Server) putCommitMsg(w http.ResponseWriter, r *http.Request, c *call, local bool) {
	if _, ok := s.storageOr(w); !ok {
		return
	}
	body, ok := s.readValue(w, r, msgNoCommitMsg)
	if !ok {
		return
	}
	st, rev, ok := s.stepRev(w, c, local)
	if !ok {
		return
	}
	err := st.Layout.WriteCommitMsg(rev, string(body))
	switch {
	case err == nil:
		writeOK(w)
	case errors.Is(err, storage.ErrNoTrail):
		s.writeError(w, http.StatusNotFound, msgNoResource)
	case errors.Is(err, storage.ErrNoSpace), errors.Is(err, storage.ErrReadOnly):
		code, msg, _ := unwritable(err)
		s.writeError(w, code, msg)
	default:
		s.log.Error("ctrl: write commit message", "rev", rev, "err", err)
		s.writeError(w, http.StatusInternalServerError, msgInternal)
	}
}

// putStepRemote refuses PUT /steps/{rev}: only local revisions are
// uploaded through the socket; the others come from the hub.
func (s *Server) putStepRemote(w http.ResponseWriter, _ *http.Request, _ *call) {
	s.writeError(w, http.StatusBadRequest, msgBadRevName)
}

// putStepLocal installs the body as revision locals/{name}: step 2 of
// upstream's local update. The state is validated and every object it
// names must be stored before anything is written, so a refused upload
// leaves no trace; the trail is then installed whole with progress NEW
// "Update not yet installed", and marked NEW "Update ready to be run" once
// it is. Running it is another request (LOCAL_RUN). An existing revision
// is never replaced (409): it may be the one running.
func (s *Server) putStepLocal(w http.ResponseWriter, r *http.Request, c *call) {
	st, ok := s.storageOr(w)
	if !ok {
		return
	}
	// RUN_GC is refused while a write holds the storage.
	s.storeMu.RLock()
	defer s.storeMu.RUnlock()
	rev := "locals/" + c.args[0]
	if storage.CheckRev(rev) != nil {
		s.writeError(w, http.StatusBadRequest, msgBadRevName)
		return
	}
	// The step of a local update defers the threshold GC too: its
	// LOCAL_RUN is next (space.go). Recorded again once installed. What
	// keeps it from the automatic GC is its progress, NEW until it runs.
	s.uploaded()
	defer s.uploaded()
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	parsed, err := state.Parse(body, st.State)
	if err != nil {
		s.log.Info("ctrl: local revision refused", "rev", rev, "err", err)
		s.writeError(w, http.StatusUnprocessableEntity, badStateMsg(err))
		return
	}
	if missing, err := missingObjects(st.Layout, parsed.Objects); err != nil {
		s.log.Info("ctrl: local revision refused", "rev", rev, "err", err)
		s.writeError(w, http.StatusUnprocessableEntity, "Storage: "+err.Error())
		return
	} else if len(missing) > 0 {
		s.log.Info("ctrl: local revision refused", "rev", rev, "missing", missing)
		s.writeError(w, http.StatusUnprocessableEntity,
			"Storage: objects not in storage: "+strings.Join(missing, ", "))
		return
	}
	prepared := storage.NewProgress(storage.StatusNew, storage.MsgPrepared)
	if err := st.Layout.InstallTrail(rev, body, storage.InstallOptions{Progress: &prepared}); err != nil {
		s.installFailed(w, rev, err)
		return
	}
	if err := st.Layout.WriteProgress(rev, storage.NewProgress(storage.StatusNew, storage.MsgInstalled)); err != nil {
		// Upstream removes a revision it could not finish installing;
		// one left "not yet installed" could not be run anyway.
		if rerr := st.Layout.RemoveTrail(rev); rerr != nil {
			s.log.Error("ctrl: remove half-installed revision", "rev", rev, "err", rerr)
		}
		s.installFailed(w, rev, err)
		return
	}
	s.stepPut(parsed.Objects)
	s.log.Info("ctrl: local revision installed", "rev", rev)
	writeOK(w)
}

// installFailed answers an install that storage refused or failed.
func (s *Server) installFailed(w http.ResponseWriter, rev string, err error) {
	switch {
	case errors.Is(err, storage.ErrTrailExists):
		s.writeError(w, http.StatusConflict, msgTrailExists)
	case errors.Is(err, storage.ErrNoSpace), errors.Is(err, storage.ErrReadOnly):
		s.log.Warn("ctrl: local revision not installed", "rev", rev, "err", err)
		code, msg, _ := unwritable(err)
		s.writeError(w, code, msg)
	case errors.Is(err, storage.ErrBadRevision):
		s.writeError(w, http.StatusBadRequest, msgBadRevName)
	case errors.Is(err, storage.ErrBadState), errors.Is(err, storage.ErrObjectMissing), errors.Is(err, storage.ErrBadChecksum):
		s.log.Info("ctrl: local revision refused", "rev", rev, "err", err)
		s.writeError(w, http.StatusUnprocessableEntity, "Storage: "+err.Error())
	default:
		s.log.Error("ctrl: local revision not installed", "rev", rev, "err", err)
		s.writeError(w, http.StatusInternalServerError, msgInternal)
	}
}

// badStateMsg is upstream's parser message followed by every problem
// found, so that the user fixes them all at once; problems of the
// signatures come first, under upstream's own prefix.
func badStateMsg(err error) string {
	ps := state.Problems(err)
	if len(ps) == 0 {
		return msgBadStateJSON + ": " + err.Error()
	}
	var sigs, others []string
	for _, p := range ps {
		if p.Secureboot {
			sigs = append(sigs, p.String())
		} else {
			others = append(others, p.String())
		}
	}
	var parts []string
	if len(sigs) > 0 {
		parts = append(parts, msgSecureboot+": "+strings.Join(sigs, "; "))
	}
	if len(others) > 0 {
		parts = append(parts, msgBadStateJSON+": "+strings.Join(others, "; "))
	}
	return strings.Join(parts, "; ")
}

// missingObjects lists, as "key (sha256)" sorted by key, the objects
// (state key → sha256, as state.Parse read them) that are not in the
// store: all of them at once, where InstallTrail stops at the first.
func missingObjects(l storage.Layout, objects map[string]string) ([]string, error) {
	var missing []string
	for key, sha := range objects {
		_, err := os.Stat(l.Object(sha))
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, key+" ("+sha+")")
		} else if err != nil {
			return nil, fmt.Errorf("check object %s: %w", sha, err)
		}
	}
	sort.Strings(missing)
	return missing, nil
}
