package ctrl

import (
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/messages"
)

// extras is what the informational endpoints serve from, set before Serve
// by SetConfig and SetMeta.
type extras struct {
	// cfgMu guards cfg: SetConfig may come after SetMeta, whose user-meta
	// it then applies.
	cfgMu      sync.RWMutex
	cfg        *config.Config
	userMeta   *metaStore
	deviceMeta *metaStore
}

// extra returns the server's extras, created on first use.
func (s *Server) extra() *extras {
	if s.x == nil {
		s.x = &extras{}
	}
	return s.x
}

// SetConfig gives the server the running configuration: GET /config and
// GET /config2 serve it and PUT /user-meta/{key} overrides it at
// config.LevelMeta. When SetMeta came first, the stored user-meta is
// applied now. Without it /config and /config2 answer 500
// "Configuration not available". It must be called before Serve.
func (s *Server) SetConfig(cfg *config.Config) {
	x := s.extra()
	x.cfgMu.Lock()
	x.cfg = cfg
	x.cfgMu.Unlock()
	if m := x.userMeta; m != nil {
		for k, v := range m.list() {
			s.overrideConfig(k, v)
		}
	}
}

// config is the configuration given to SetConfig, or nil.
func (s *Server) config() *config.Config {
	if s.x == nil {
		return nil
	}
	s.x.cfgMu.RLock()
	defer s.x.cfgMu.RUnlock()
	return s.x.cfg
}

const msgNoConfig = "Configuration not available"

// getConfig is GET /config: every key's value keyed by its legacy alias,
// typed as upstream serves them.
func (s *Server) getConfig(w http.ResponseWriter, _ *http.Request, _ *call) {
	s.serveConfig(w, func(cfg *config.Config) any { return cfg.Legacy() })
}

// getConfig2 is GET /config2: [{"key","value","modified"}], sorted by key.
func (s *Server) getConfig2(w http.ResponseWriter, _ *http.Request, _ *call) {
	s.serveConfig(w, func(cfg *config.Config) any { return cfg.All() })
}

// serveConfig answers view(configuration), or 500 without one.
func (s *Server) serveConfig(w http.ResponseWriter, view func(*config.Config) any) {
	cfg := s.config()
	if cfg == nil {
		s.writeError(w, http.StatusInternalServerError, msgNoConfig)
		return
	}
	s.writeJSON(w, http.StatusOK, view(cfg))
}

// readBuildInfo is runtime/debug.ReadBuildInfo; tests replace it.
var readBuildInfo = debug.ReadBuildInfo

// getBuildInfo is GET /buildinfo: a text/plain build manifest, as upstream.
// Ours is the binary's Go build information (go version, module, VCS
// revision and time, dependencies), as `go version -m` prints it.
func (s *Server) getBuildInfo(w http.ResponseWriter, _ *http.Request, _ *call) {
	bi, ok := readBuildInfo()
	if !ok {
		s.writeError(w, http.StatusInternalServerError, "Cannot read build info")
		return
	}
	b := []byte(bi.String())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// getDrivers is GET /drivers: the caller's driver states. Revisions here
// declare no drivers, so every caller has none.
func (s *Server) getDrivers(w http.ResponseWriter, _ *http.Request, _ *call) {
	s.writeJSON(w, http.StatusOK, []struct{}{})
}

// putDrivers is PUT /drivers/load and /drivers/unload: all of the
// caller's manual drivers, none here, so there is nothing to do.
func (s *Server) putDrivers(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeOK(w)
}

// putDriver is PUT /drivers/{alias}/load and /unload: no driver has that
// alias, upstream's answer for a driver it cannot load.
func (s *Server) putDriver(w http.ResponseWriter, _ *http.Request, _ *call) {
	s.writeError(w, http.StatusBadRequest, "Error loading driver")
}

// GraphBackend is the part of a Backend that knows the xconnect graph; a
// Backend without it has no links, and GET /xconnect-graph answers [].
type GraphBackend interface {
	XconnectGraph() ([]messages.LinkInfo, error)
}

// getXconnectGraph is GET /xconnect-graph: the service mesh's links, in
// upstream's shape.
func (s *Server) getXconnectGraph(w http.ResponseWriter, _ *http.Request, _ *call) {
	g, ok := s.b.(GraphBackend)
	if !ok {
		s.writeJSON(w, http.StatusOK, []messages.LinkInfo{})
		return
	}
	links, err := g.XconnectGraph()
	if err != nil {
		s.writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.writeJSON(w, http.StatusOK, links)
}

// getDaemons is GET /daemons: [{"name","pid","respawn"}]. Pantavisor here
// manages no daemons of its own (upstream's are pv-xconnect and hwrngd).
func (s *Server) getDaemons(w http.ResponseWriter, _ *http.Request, _ *call) {
	s.writeJSON(w, http.StatusOK, []struct{}{})
}

// putDaemon is PUT /daemons/{name} {"action":"start"|"stop"}: with no
// daemons every well-formed request is upstream's 404 "Daemon not found".
func (s *Server) putDaemon(w http.ResponseWriter, r *http.Request, _ *call) {
	if _, ok := s.readAction(w, r); ok {
		s.writeError(w, http.StatusNotFound, "Daemon not found")
	}
}
