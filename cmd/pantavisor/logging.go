package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/lmittmann/tint"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/internal/nofollow"
)

// newLogger logs to stderr (coloured with tint when it is a terminal) and,
// when file is set, as plain text to that file too: the device's log must be
// readable after the fact, the console while watching. The file is a
// logSink (nil without a file), which the running revision's log
// directory moves it to.
func newLogger(stderr io.Writer, file string, level slog.Leveler) (*slog.Logger, *logSink, error) {
	var console slog.Handler
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		console = tint.NewHandler(f, &tint.Options{Level: level, TimeFormat: "15:04:05.000"})
	} else {
		console = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	if file == "" {
		return slog.New(console), nil, nil
	}
	sink := &logSink{}
	if err := sink.Move(file); err != nil {
		return nil, nil, err
	}
	h := fanout{console, slog.NewTextHandler(sink, &slog.HandlerOptions{Level: level})}
	return slog.New(h), sink, nil
}

// logLevel is the level pantavisor logs at: debug when asked on the
// command line (appengine -v) or by PV_LOG_LEVEL, which is read at each
// record, for user-meta and a revision's OEM configuration change it while
// the device runs (GET /config2 shows the new value at once). Until the
// configuration is loaded (cfg nil), the command line alone decides.
type logLevel struct {
	verbose bool
	cfg     atomic.Pointer[config.Config]
}

func (l *logLevel) Level() slog.Level {
	if cfg := l.cfg.Load(); l.verbose || (cfg != nil && debugLogging(cfg)) {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// logSink is pantavisor's own log file. Upstream writes it under the
// running revision's log directory; opened once at boot, it stayed in the
// boot revision's after a non-reboot update, where the log keeper, for
// which that is another revision's, emptied it before a flooding
// container's, and GC removed it while it was written (a file growing
// unseen until pantavisor exits). Move reopens it in the new directory.
type logSink struct {
	mu   sync.Mutex
	f    *os.File
	path string // f's
}

// Write appends p to the current file (under the lock: a move in between
// would otherwise write to a closed file).
func (s *logSink) Write(p []byte) (int, error) {
	if s == nil {
		return len(p), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return len(p), nil
	}
	return s.f.Write(p)
}

// Move appends from now on to file, creating it and its directory, and
// closes the previous file; on error the previous file goes on. The file
// it writes already (the boot revision's, at its spawn) is kept open.
func (s *logSink) Move(file string) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	same := s.f != nil && s.path == file
	s.mu.Unlock()
	if same {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	// The revision's log directory may be bind-mounted into a
	// container, which may have put a symlink at the log's name (to the
	// storage's state JSON, say): it is replaced, never followed.
	f, err := nofollow.Append(file, 0o644)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.f
	s.f, s.path = f, file
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file; later writes go nowhere.
func (s *logSink) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// fanout sends every record to each handler.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(a []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(a)
	}
	return out
}

func (f fanout) WithGroup(n string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(n)
	}
	return out
}

// handlerSwitch sends every record to the handler set last: a logger
// made before the log file is open (the watchdog's) that writes to it
// once it is. Handlers derived by WithAttrs and WithGroup keep the
// handler of the moment.
type handlerSwitch struct{ h atomic.Pointer[slog.Handler] }

func (s *handlerSwitch) set(h slog.Handler) { s.h.Store(&h) }

func (s *handlerSwitch) Enabled(ctx context.Context, l slog.Level) bool {
	return (*s.h.Load()).Enabled(ctx, l)
}

func (s *handlerSwitch) Handle(ctx context.Context, r slog.Record) error {
	return (*s.h.Load()).Handle(ctx, r)
}

func (s *handlerSwitch) WithAttrs(a []slog.Attr) slog.Handler { return (*s.h.Load()).WithAttrs(a) }

func (s *handlerSwitch) WithGroup(n string) slog.Handler { return (*s.h.Load()).WithGroup(n) }
