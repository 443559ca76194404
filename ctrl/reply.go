package ctrl

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// Upstream's error messages, byte for byte: clients match on them.
const (
	msgMethod        = "Method not supported for this endpoint"
	msgNotMgmt       = "Request not sent from mgmt platform"
	msgUnknownCaller = "Internal error, unknown caller"
	msgSignalFormat  = "Signal has bad format"
	msgSignalRefused = "Signal not expected from this platform"

	msgNoContainer     = "Container not found"
	msgSystemContainer = "Container has restart_policy 'system' and cannot be controlled via API"
	msgInvalidAction   = "Invalid action. Use 'start', 'stop', or 'restart'"
)

// Our own error messages, for cases upstream has none.
const (
	msgHost     = "Host not allowed"
	msgTooLarge = "Request body too large"
	msgInternal = "Internal error"
)

// errorBody is the shape of every error answer.
type errorBody struct {
	Error string `json:"Error"`
}

// writeJSON answers status with v as JSON. Marshalling first lets a
// failure still become a clean 500 and gives the client a Content-Length.
func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	s.writeEncoded(w, status, b, err)
}

// writeEncoded answers status with b, the JSON encoding of a reply, or a
// 500 when encoding it failed with err.
func (s *Server) writeEncoded(w http.ResponseWriter, status int, b []byte, err error) {
	if err != nil {
		s.log.Error("ctrl: encode reply", "err", err)
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{msgInternal})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError answers status with {"Error": msg}.
func (s *Server) writeError(w http.ResponseWriter, status int, msg string) {
	s.writeJSON(w, status, errorBody{msg})
}

// writeOK answers 200 with an empty body, as upstream does for actions.
func writeOK(w http.ResponseWriter) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// readBody reads the whole (size-limited) request body. When it fails it
// has answered (413 beyond the route's limit, 400 otherwise) and returns
// false.
// readValue is readBody for a body that must not be empty: an empty one is
// answered 400 with empty, upstream's message for what was missing.
func (s *Server) readValue(w http.ResponseWriter, r *http.Request, empty string) ([]byte, bool) {
	body, ok := s.readBody(w, r)
	if ok && len(body) == 0 {
		s.writeError(w, http.StatusBadRequest, empty)
		return nil, false
	}
	return body, ok
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(r.Body)
	if err == nil {
		return b, true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		w.Header().Set("Connection", "close")
		s.writeError(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		return nil, false
	}
	s.writeError(w, http.StatusBadRequest, "Cannot read request body")
	return nil, false
}
