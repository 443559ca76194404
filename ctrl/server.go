package ctrl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/pantavisor/pv/internal/acceptretry"
	"github.com/pantavisor/pv/internal/throttle"
	"github.com/pantavisor/pv/messages"
)

// Backend is what the control socket drives: the running actor tree
// (*actors.System) in pantavisor, a fake in tests. Its methods are called
// from request goroutines, concurrently.
type Backend interface {
	// Containers returns GET /containers; it also gives callers' roles.
	// The list is the caller's to read only, and the backend never
	// changes a list it returned (it may return the same one again).
	Containers() ([]messages.ContainerInfo, error)
	// Groups returns GET /groups.
	Groups() ([]messages.GroupInfo, error)
	// Signal delivers a container's POST /signal; an error means the
	// signal was not expected (or could not be delivered).
	Signal(container, typ, payload string) error
	// Tree returns the live actor tree for GET /actors.
	Tree() *messages.Node
	// ContainerAction carries out PUT /containers/{name}: "start", "stop"
	// or "restart". A *messages.ActionError says how it ended (unknown
	// container, system container, ...), which chooses the HTTP status;
	// any other error is a 500.
	ContainerAction(name, action string) error
	// RunRevision starts the update to rev (POST /commands LOCAL_RUN;
	// commit: LOCAL_RUN_COMMIT, which forces a reboot). Refusals wrap
	// update.ErrUpdateOngoing, ErrUnknownRevision or ErrInvalidRevision,
	// which choose the HTTP status; actors.ErrNoUpdates without storage.
	RunRevision(rev string, commit bool) error
	// Power reboots or powers off the device (REBOOT_DEVICE,
	// POWEROFF_DEVICE); refused with update.ErrUpdateOngoing while an
	// update is under test.
	Power(poweroff bool, reason string) error
	// Revisions names the revisions in use, which RUN_GC keeps, and
	// whether an update is under test.
	Revisions() (*messages.RevisionsReply, error)
}

// DefaultCgroupParent is the cgroup parent New resolves callers with when
// given no Resolver; it matches the runtime driver's default.
const DefaultCgroupParent = "pantavisor"

// Server is the pv-ctrl HTTP server. One Server may Serve several
// listeners; Close or Shutdown ends them all.
type Server struct {
	b       Backend
	resolve Resolver
	log     *slog.Logger
	routes  *router
	hs      *http.Server
	// store is the device storage of the update endpoints; nil until
	// SetStorage.
	store *Storage
	// storeMu serializes storage GC (Lock) with the writes of the update
	// endpoints (RLock), which may run together.
	storeMu sync.RWMutex
	// cmdMu lets one POST /commands run at a time; the automatic GC
	// takes it too (space.go).
	cmdMu sync.Mutex
	// recent is the record of the uploads, for the automatic GC (space.go).
	recent uploads
	// x is what SetConfig and SetMeta gave (info.go); nil until then.
	x *extras
	// conns caps the open connections (SetMaxConns).
	conns connLimit
	// metrics is GET /metrics' registry.
	metrics *metrics
	// listed is the last GET /containers answer (listcache.go).
	listed containersCache
	// bodyTimeout is the body timeout (limits.go); tests shorten it.
	bodyTimeout time.Duration
	// reexec is SetReexec's; nil refuses REEXEC_SUPERVISOR.
	reexec func(reason string)
}

// SetReexec lets POST /commands REEXEC_SUPERVISOR ask for the supervisor's
// re-execution from the binary's file (an in-place upgrade: the
// containers keep running); fn is called once the answer has left for the
// client, from the request's goroutine, and must not block: it only asks.
func (s *Server) SetReexec(fn func(reason string)) { s.reexec = fn }

// New returns a server answering from b, identifying callers with r
// (CgroupResolver(DefaultCgroupParent) when nil) and logging to log
// (slog.Default() when nil).
func New(b Backend, r Resolver, log *slog.Logger) *Server {
	if r == nil {
		r = CgroupResolver(DefaultCgroupParent)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{b: b, resolve: r, log: log, routes: defaultRouter, bodyTimeout: bodyTimeout}
	s.conns.max = DefaultMaxConns
	s.conns.refusals = throttle.Every(refuseLogEvery)
	s.recent.start = time.Now()
	s.conns.source = sourceByPidNS()
	s.metrics = newMetrics(s)
	s.hs = &http.Server{
		Handler:     s,
		ConnContext: s.connContext,
		// No ReadTimeout: it would cut object uploads, which may take
		// hours, and time out net/http's background read while a long
		// command runs; ServeHTTP bounds bodies instead (limitBody).
		// WriteTimeout is pushed ahead by every write (trackWriter), so
		// it bounds each write, not a whole download.
		ReadHeaderTimeout: headerTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Serve accepts connections on l until Close or Shutdown, then returns nil.
// l should be a unix socket listener (see Listen): on any other kind peers
// have no credentials, so every caller is unknown and denied.
//
// An accept that fails (the kernel short of memory or socket buffers, the
// descriptor table full) is tried again after a pause, however it failed:
// a control socket that stopped answering would stay so until the next
// boot.
func (s *Server) Serve(l net.Listener) error {
	err := s.hs.Serve(limitListener{Listener: teListener{acceptretry.Listener(l)}, lim: &s.conns, s: s})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve control socket: %w", err)
}

// Close stops the server at once: listeners and every connection are
// closed, requests in flight are cut off.
func (s *Server) Close() error {
	return s.hs.Close()
}

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests in flight to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.hs.Shutdown(ctx)
}

// ServeHTTP runs the checks of the package documentation in order, then the
// route's handler. It is exported for http.Server; a request served outside
// Serve has no peer and is denied as unknown.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &trackWriter{ResponseWriter: rw}
	var rt *route
	// Deferred first, so it runs after recoverHandler has answered.
	defer func() { s.metrics.count(rt, w.statusCode()) }()
	defer s.recoverHandler(w, r)
	s.boundUnreadBody(rw, r)
	if !hostAllowed(r.Host) {
		w.Header().Set("Connection", "close")
		s.writeError(w, http.StatusBadRequest, msgHost)
		return
	}
	rt, args, pathKnown := s.routes.match(r.Method, r.URL.Path)
	if rt == nil {
		if pathKnown {
			s.writeError(w, http.StatusBadRequest, msgMethod)
		} else {
			s.writeError(w, http.StatusBadRequest, "unknown endpoint: "+r.RequestURI)
		}
		return
	}
	c, err := s.callerOf(r)
	if err != nil {
		s.log.Warn("ctrl: request from unknown caller denied", "method", r.Method, "path", r.URL.Path, "err", err)
		s.writeError(w, http.StatusInternalServerError, msgUnknownCaller)
		return
	}
	if status, msg := authorize(rt.perm, c); status != 0 {
		s.log.Info("ctrl: request denied", "method", r.Method, "path", r.URL.Path, "caller", c, "need", rt.perm)
		s.writeError(w, status, msg)
		return
	}
	limit := s.bodyLimit(rt)
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close")
		s.writeError(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		return
	}
	// The server's own writer, not the wrapper: MaxBytesReader tells it to
	// close the connection once the limit is hit.
	s.limitBody(rw, r, limit)
	r.Body = http.MaxBytesReader(rw, r.Body, limit)
	rt.handle(s, w, r, &call{caller: c, args: args})
}

// hostAllowed is upstream's Host rule: empty, absent or localhost.
func hostAllowed(host string) bool {
	return host == "" || strings.EqualFold(host, "localhost")
}

// recoverHandler turns a handler panic into a 500 (or, when the answer has
// begun, an aborted connection, so the client cannot take half an answer
// for a whole one) and logs it; the server goes on.
func (s *Server) recoverHandler(w *trackWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.Error("ctrl: handler panicked", "method", r.Method, "path", r.URL.Path,
		"panic", v, "stack", string(debug.Stack()))
	if w.wrote {
		panic(http.ErrAbortHandler)
	}
	clear(w.Header())
	s.writeError(w, http.StatusInternalServerError, msgInternal)
}

// trackWriter remembers whether the answer has begun, for recoverHandler.
// It also pushes the write deadline ahead of every write (renewWrite).
type trackWriter struct {
	http.ResponseWriter
	wrote bool
	rc    *http.ResponseController
	// renewed is when renewWrite last moved the write deadline.
	renewed time.Time
	// status is the answer's status code, 0 until written.
	status int
}

// statusCode is the status the client got: 200 when the handler wrote a
// body without a status, 0 when the answer never began (an aborted
// connection).
func (t *trackWriter) statusCode() int {
	if t.status == 0 && t.wrote {
		return http.StatusOK
	}
	return t.status
}

func (t *trackWriter) WriteHeader(code int) {
	if code >= 200 {
		if !t.wrote {
			t.status = code
		}
		t.wrote = true
	}
	t.renewWrite()
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackWriter) Write(b []byte) (int, error) {
	t.wrote = true
	t.renewWrite()
	return t.ResponseWriter.Write(b)
}

// ReadFrom keeps net/http's sendfile/splice path for handlers that io.Copy
// a file into the answer, streamChunk at a time, each under a fresh write
// deadline.
func (t *trackWriter) ReadFrom(r io.Reader) (int64, error) {
	t.wrote = true
	rf, ok := t.ResponseWriter.(io.ReaderFrom)
	if !ok {
		rf = readerFrom{t.ResponseWriter}
	}
	var total int64
	for {
		t.renewWrite()
		n, err := rf.ReadFrom(io.LimitReader(r, streamChunk))
		total += n
		if err != nil || n < streamChunk {
			return total, err
		}
	}
}

// readerFrom is io.Copy to a writer without its own ReadFrom.
type readerFrom struct{ w io.Writer }

func (f readerFrom) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(f.w, r)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (t *trackWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// Listen creates the control socket at path: it creates missing parent
// directories (0755), replaces a stale socket left by a previous run and
// makes the socket 0660 (owner and group only: whoever can connect can
// reach the privileged endpoints when they share the host's cgroups).
//
// Danger: the file at path is removed when it is a socket nobody answers
// on. It refuses to touch a file that is not a socket, or a socket another
// server still answers on. The socket has the process umask's mode for the
// instant between bind and chmod.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create control socket directory: %w", err)
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil:
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen on %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: another server answers on it", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("stat control socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod control socket: %w", err)
	}
	return l, nil
}
