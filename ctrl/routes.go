package ctrl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/pantavisor/pv/messages"
)

// routeTable is every endpoint. An upstream endpoint still missing
// (reference §7.2) is one more row and one handler; the permission table
// test fails until the row has its cases.
var routeTable = []route{
	{method: http.MethodGet, pattern: "/containers", perm: permMgmt, handle: (*Server).getContainers},
	{method: http.MethodGet, pattern: "/groups", perm: permMgmt, handle: (*Server).getGroups},
	{method: http.MethodPost, pattern: "/signal", perm: permAny, maxBody: 4096, handle: (*Server).postSignal},
	{method: http.MethodGet, pattern: "/actors", perm: permMgmt, handle: (*Server).getActors},
	{method: http.MethodPut, pattern: "/containers/{}", perm: permMgmt, maxBody: 1024, handle: (*Server).putContainer},
	{method: http.MethodPost, pattern: "/commands", perm: permMgmt, maxBody: maxCommand, handle: (*Server).postCommand},
	{method: http.MethodPost, pattern: "/storage/gc", perm: permMgmt, handle: (*Server).postStorageGC},
	{method: http.MethodGet, pattern: "/metrics", perm: permMgmt, handle: (*Server).getMetrics},

	// Local updates' storage side (storage.go).
	{method: http.MethodGet, pattern: "/objects", perm: permMgmt, handle: (*Server).getObjects},
	{method: http.MethodGet, pattern: "/objects/{}", perm: permMgmt, handle: (*Server).getObject},
	{method: http.MethodPut, pattern: "/objects/{}", perm: permMgmt, maxBody: bodyObject, handle: (*Server).putObject},
	{method: http.MethodGet, pattern: "/steps", perm: permMgmt, handle: (*Server).getSteps},
	{method: http.MethodGet, pattern: "/steps/{}", perm: permMgmt, handle: remoteStep((*Server).getStep)},
	{method: http.MethodGet, pattern: "/steps/locals/{}", perm: permMgmt, handle: localStep((*Server).getStep)},
	{method: http.MethodPut, pattern: "/steps/{}", perm: permMgmt, maxBody: maxStateJSON, handle: (*Server).putStepRemote},
	{method: http.MethodPut, pattern: "/steps/locals/{}", perm: permMgmt, maxBody: maxStateJSON, handle: (*Server).putStepLocal},
	{method: http.MethodGet, pattern: "/steps/{}/progress", perm: permMgmt, handle: remoteStep((*Server).getProgress)},
	{method: http.MethodGet, pattern: "/steps/locals/{}/progress", perm: permMgmt, handle: localStep((*Server).getProgress)},
	{method: http.MethodPut, pattern: "/steps/{}/commitmsg", perm: permMgmt, maxBody: maxCommitMsg, handle: remoteStep((*Server).putCommitMsg)},
	{method: http.MethodPut, pattern: "/steps/locals/{}/commitmsg", perm: permMgmt, maxBody: maxCommitMsg, handle: localStep((*Server).putCommitMsg)},

	// Metadata (meta.go) and information (info.go).
	{method: http.MethodGet, pattern: "/user-meta", perm: permMgmt, handle: getMeta(userMeta)},
	{method: http.MethodPut, pattern: "/user-meta/{}", perm: permMgmt, maxBody: maxMetaValue, handle: putMeta(userMeta)},
	{method: http.MethodDelete, pattern: "/user-meta/{}", perm: permMgmt, handle: deleteMeta(userMeta)},
	{method: http.MethodGet, pattern: "/device-meta", perm: permMgmt, handle: getMeta(deviceMeta)},
	{method: http.MethodPut, pattern: "/device-meta/{}", perm: permMgmt, maxBody: maxMetaValue, handle: putMeta(deviceMeta)},
	{method: http.MethodDelete, pattern: "/device-meta/{}", perm: permMgmt, handle: deleteMeta(deviceMeta)},
	{method: http.MethodGet, pattern: "/buildinfo", perm: permMgmt, handle: (*Server).getBuildInfo},
	{method: http.MethodGet, pattern: "/drivers", perm: permMgmt, handle: (*Server).getDrivers},
	{method: http.MethodPut, pattern: "/drivers/load", perm: permMgmt, handle: (*Server).putDrivers},
	{method: http.MethodPut, pattern: "/drivers/unload", perm: permMgmt, handle: (*Server).putDrivers},
	{method: http.MethodPut, pattern: "/drivers/{}/load", perm: permMgmt, handle: (*Server).putDriver},
	{method: http.MethodPut, pattern: "/drivers/{}/unload", perm: permMgmt, handle: (*Server).putDriver},
	{method: http.MethodGet, pattern: "/config", perm: permMgmt, handle: (*Server).getConfig},
	{method: http.MethodGet, pattern: "/config2", perm: permMgmt, handle: (*Server).getConfig2},
	{method: http.MethodGet, pattern: "/xconnect-graph", perm: permMgmt, handle: (*Server).getXconnectGraph},
	{method: http.MethodGet, pattern: "/daemons", perm: permMgmt, handle: (*Server).getDaemons},
	{method: http.MethodPut, pattern: "/daemons/{}", perm: permMgmt, maxBody: 1024, handle: (*Server).putDaemon},
}

// defaultRouter is routeTable compiled once: a bad row is a programming
// error that every test run catches at init.
var defaultRouter = mustRouter(routeTable)

func mustRouter(table []route) *router {
	rt, err := newRouter(table)
	if err != nil {
		panic(err)
	}
	return rt
}

func (s *Server) getContainers(w http.ResponseWriter, _ *http.Request, _ *call) {
	cs, err := s.b.Containers()
	if err != nil {
		s.log.Error("ctrl: list containers", "err", err)
		s.writeError(w, http.StatusInternalServerError, "Cannot list containers")
		return
	}
	if cs == nil {
		cs = []messages.ContainerInfo{} // [] not null, as upstream
	}
	b, err := s.listed.encode(cs)
	s.writeEncoded(w, http.StatusOK, b, err)
}

func (s *Server) getGroups(w http.ResponseWriter, _ *http.Request, _ *call) {
	gs, err := s.b.Groups()
	if err != nil {
		s.log.Error("ctrl: list groups", "err", err)
		s.writeError(w, http.StatusInternalServerError, "Cannot list groups")
		return
	}
	if gs == nil {
		gs = []messages.GroupInfo{}
	}
	s.writeJSON(w, http.StatusOK, gs)
}

// signalRequest is the body of POST /signal.
type signalRequest struct {
	Type    string `json:"type"`
	Payload string `json:"payload"`
}

// postSignal delivers a signal from the calling container; the container is
// always the caller, never named in the body, so a container can only
// signal for itself.
func (s *Server) postSignal(w http.ResponseWriter, r *http.Request, c *call) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req signalRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Type == "" {
		s.writeError(w, http.StatusBadRequest, msgSignalFormat)
		return
	}
	if c.caller.container == "" {
		s.writeError(w, http.StatusInternalServerError, msgSignalRefused)
		return
	}
	if err := s.b.Signal(c.caller.container, req.Type, req.Payload); err != nil {
		// Upstream has one answer for every refusal; the reason goes to
		// the log.
		s.log.Info("ctrl: signal refused", "container", c.caller.container, "type", req.Type, "err", err)
		s.writeError(w, http.StatusInternalServerError, msgSignalRefused)
		return
	}
	writeOK(w)
}

func (s *Server) getActors(w http.ResponseWriter, _ *http.Request, _ *call) {
	n := s.b.Tree()
	if n == nil {
		s.log.Error("ctrl: describe actors", "err", fmt.Errorf("backend returned no tree"))
		s.writeError(w, http.StatusInternalServerError, "Cannot describe actors")
		return
	}
	s.writeJSON(w, http.StatusOK, n)
}

// containerRequest is the body of PUT /containers/{name}.
type containerRequest struct {
	Action *string `json:"action"`
}

// readAction reads the {"action": ...} body of PUT /containers/{name}
// and PUT /daemons/{name}, answering upstream's 400s for a body that is
// empty, not JSON, or without an action.
func (s *Server) readAction(w http.ResponseWriter, r *http.Request) (string, bool) {
	body, ok := s.readValue(w, r, "No data")
	if !ok {
		return "", false
	}
	var req containerRequest
	switch {
	case json.Unmarshal(body, &req) != nil:
		s.writeError(w, http.StatusBadRequest, "Invalid JSON")
		return "", false
	case req.Action == nil:
		s.writeError(w, http.StatusBadRequest, "Missing 'action' field")
		return "", false
	}
	return *req.Action, true
}

// putContainer starts, stops or restarts a container-policy container.
// Unlike upstream, a start that fails is reported as an error.
func (s *Server) putContainer(w http.ResponseWriter, r *http.Request, c *call) {
	action, ok := s.readAction(w, r)
	if !ok {
		return
	}
	name := c.args[0]
	switch action {
	case messages.ActionStart, messages.ActionStop, messages.ActionRestart:
	default:
		s.writeError(w, http.StatusBadRequest, msgInvalidAction)
		return
	}
	if err := s.b.ContainerAction(name, action); err != nil {
		status, msg := actionReply(err)
		s.log.Info("ctrl: container action refused", "container", name, "action", action, "err", err)
		s.writeError(w, status, msg)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// actionReply is the HTTP status and message for a container action that
// did not succeed: upstream's status and words for each outcome, and the
// cause of a failed start (upstream answers 200 even then).
func actionReply(err error) (int, string) {
	var ae *messages.ActionError
	if !errors.As(err, &ae) {
		return http.StatusInternalServerError, err.Error()
	}
	switch ae.Outcome {
	case messages.NotFound:
		return http.StatusNotFound, msgNoContainer
	case messages.NotAllowed:
		return http.StatusForbidden, msgSystemContainer
	case messages.InvalidAction:
		return http.StatusBadRequest, msgInvalidAction
	case messages.WrongState:
		return http.StatusBadRequest, "Container state does not allow " + ae.Action
	case messages.StartFailed:
		return http.StatusInternalServerError, "container failed: " + ae.Detail
	case messages.Canceled:
		return http.StatusConflict, "container " + ae.Action + " canceled: " + ae.Detail
	}
	return http.StatusInternalServerError, err.Error()
}
