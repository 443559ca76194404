package main

import (
	"context"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/ctrl"
)

var _ ctrl.Backend = (*actors.System)(nil)

// serveControl serves pv-ctrl on l and returns the function that stops
// it. Callers are identified by the cgroup of their pid: containers live
// under the driver's cgroup parent. The update endpoints (/objects,
// /steps) write to st directly: mgmt callers can add objects and local
// revisions to the device storage.
func serveControl(l net.Listener, sys *actors.System, cgroupParent string, st ctrl.Storage, log *slog.Logger) func() {
	srv := ctrl.New(sys, ctrl.CgroupResolver(cgroupParent), log.With("component", "ctrl"))
	srv.SetStorage(st)
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
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
