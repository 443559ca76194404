package main

import (
	"context"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/ctrl"
)

var _ ctrl.Backend = (*actors.System)(nil)

// serveControl serves pv-ctrl on l and returns the function that stops
// it. Callers are identified by their pid and mount namespaces, with the
// cgroup (containers live under the driver's cgroup parent) as a second
// signal. The update endpoints (/objects,
// /steps) write to st directly: mgmt callers can add objects and local
// revisions to the device storage, and the storage is garbage collected
// when its free space falls below PV_STORAGE_GC_THRESHOLD. /config and /config2 serve cfg, which
// PUT /user-meta overrides; user-meta and device-meta live under runDir and
// are kept under the storage's cache/ (a failure there leaves those
// endpoints answering 500, the rest of the socket works).
func serveControl(l net.Listener, sys *actors.System, cgroupParent string, st ctrl.Storage, cfg *config.Config, runDir string,
	reexec func(string), log *slog.Logger) func() {
	resolve, err := ctrl.IdentityResolver(cgroupParent, sys.Containers)
	if err != nil {
		// Without our own namespaces no caller can be told from the host:
		// everyone is unknown, hence denied.
		log.Error("control socket: callers cannot be identified", "err", err)
		resolve = func(int) (string, error) { return "", err }
	}
	srv := ctrl.New(sys, resolve, log.With("component", "ctrl"))
	srv.SetStorage(st)
	srv.SetConfig(cfg)
	if reexec != nil {
		srv.SetReexec(reexec)
	}
	if err := srv.SetMeta(runDir, st.Layout.Root); err != nil {
		log.Error("control socket: user-meta and device-meta unavailable", "err", err)
	}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				log.Error("control socket server panicked", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		if err := srv.Serve(l); err != nil {
			log.Debug("control socket closed", "err", err)
		}
	}()
	// The threshold GC (PV_STORAGE_GC_THRESHOLD) lives with the server:
	// it shares the storage's locks and the record of the uploads.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		srv.WatchStorage(watchCtx, ctrl.StorageCheckInterval)
	}()
	return func() {
		// A GC in flight finishes before the stop returns: the storage
		// is unmounted next, and nothing must be removed after.
		stopWatch()
		<-watched
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
