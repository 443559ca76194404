package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/lmittmann/tint"
	"golang.org/x/sys/unix"
)

// newLogger logs to stderr (coloured with tint when it is a terminal) and,
// when file is set, as plain text to that file too: the device's log must be
// readable after the fact, the console while watching.
func newLogger(stderr io.Writer, file string, level slog.Level) (*slog.Logger, func(), error) {
	var console slog.Handler
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		console = tint.NewHandler(f, &tint.Options{Level: level, TimeFormat: "15:04:05.000"})
	} else {
		console = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	if file == "" {
		return slog.New(console), func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	h := fanout{console, slog.NewTextHandler(f, &slog.HandlerOptions{Level: level})}
	return slog.New(h), func() { f.Close() }, nil
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
