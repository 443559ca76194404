// Package xconnect is the service mesh between containers: the graph of
// links a state asks for (graph.go), the pieces every plugin shares (the
// proxy contract, traffic counters, a byte relay), and the namespace work
// that puts a link's consumer end inside a container (ns_linux.go).
//
// One sub-package per link type carries the data plane: unix, wayland,
// rest, dbus, drm, tcp, http. The link actors (package actors) own the
// when — a link comes up when both ends run, is re-injected when the
// consumer restarts and goes away with either end; the plugins own the how.
package xconnect
