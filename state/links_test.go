package state_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/xconnect"
	xhttp "github.com/pantavisor/pv/xconnect/http"
)

const (
	objA = "1111111111111111111111111111111111111111111111111111111111111111"
	objB = "2222222222222222222222222222222222222222222222222222222222222222"
)

// linkState is a revision in which cli requires req of web, which exports
// "db" (tcp, by port), "site" (http, by port) and "api" (unix).
func linkState(t *testing.T, req map[string]any) []byte {
	t.Helper()
	st := map[string]any{
		"#spec":        state.SpecSystem1,
		"device.json":  map[string]any{"groups": []any{map[string]any{"name": "app"}}},
		"web/run.json": map[string]any{"name": "web", "type": "lxc", "config": "lxc.container.conf", "root-volume": "root.squashfs"},
		"web/services.json": map[string]any{"services": []any{
			map[string]any{"name": "db", "type": "tcp", "port": 5432},
			map[string]any{"name": "site", "type": "http", "port": 8000},
			map[string]any{"name": "api", "type": "unix", "socket": "/run/api.sock"},
		}},
		"web/lxc.container.conf": objA, "web/root.squashfs": objB,
		"cli/run.json": map[string]any{"name": "cli", "type": "lxc", "config": "lxc.container.conf", "root-volume": "root.squashfs",
			"network":  map[string]any{"mode": "host"},
			"services": map[string]any{"required": []any{req}}},
		"cli/lxc.container.conf": objA, "cli/root.squashfs": objB,
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The parser accepts a tcp or http link exactly when the link plane can
// listen on its consumer end (xconnect/mesh Establish → xhttp.ParseTarget),
// and a link of a socket type exactly when its end is an absolute path
// (xconnect.ListenUnix, Mknod): a link it accepts but cannot set up is
// retried for ever. The parser mirrors ParseTarget (it cannot import it);
// this keeps the two in step.
func TestLinkTargetsAgreeWithTheLinkPlane(t *testing.T) {
	tests := []map[string]any{
		{"name": "db", "type": "tcp"}, // no target: /tmp/pvx_cli_db.sock
		{"name": "db"},                // type from the export, no target
		{"name": "db", "type": "tcp", "target": "/run/db.sock"},
		{"name": "db", "target": "127.0.0.1:5432"},
		{"name": "db", "target": ":5432"},
		{"name": "db", "target": "[::1]:5432"},
		{"name": "db", "target": "localhost:5432"},
		{"name": "db", "target": "127.0.0.1:0"},
		{"name": "db", "target": "127.0.0.1:65536"},
		{"name": "db", "target": "127.0.0.1:http"},
		{"name": "db", "target": "127.0.0.1"},
		{"name": "db", "interface": "eth0"},
		{"name": "site", "target": ":8080/ui/"},
		{"name": "site", "target": "0.0.0.0:8080"},
		{"name": "site", "target": ":8080//"},
		{"name": "site", "target": "ui:8080/x"},
		{"name": "api", "type": "unix", "target": "run/api.sock"},
		{"name": "api", "target": "/run/api.sock"},
		{"name": "api"}, // /tmp/pvx_cli_api.sock
		{"name": "api", "interface": "api.sock"},
		{"name": "api", "interface": "/run/x.sock"},
	}
	for _, req := range tests {
		st, err := state.Parse(linkState(t, req), state.Options{AppEngine: true})
		// Parse returns what it understood of a refused state too: the
		// link is resolved from it either way.
		links := xconnect.Graph(st)
		if len(links) != 1 {
			t.Fatalf("requirement %v: %d links (%v): %+v", req, len(links), err, links)
		}
		l := links[0]
		var planeErr error
		switch l.Type {
		case "tcp", "http":
			_, _, planeErr = xhttp.ParseTarget(l.ConsumerEnd())
		default:
			if end := l.ConsumerEnd(); end == "" || end[0] != '/' {
				planeErr = errRelative
			}
		}
		switch {
		case err == nil && planeErr != nil:
			t.Errorf("requirement %v accepted, but its %s link cannot be set up: %v", req, l.Type, planeErr)
		case err != nil && planeErr == nil:
			t.Errorf("requirement %v refused (%v), but the link plane sets up %s %q", req, err, l.Type, l.ConsumerEnd())
		}
	}
}

var errRelative = errors.New("not an absolute path")

// Two http ingress rules on one listener whose prefixes the router takes
// for one route (xconnect/http cleanPrefix: ":80/api" and ":80/api/") are
// refused: the second would never get a request.
func TestIngressPrefixesAreTheRoutersRoutes(t *testing.T) {
	for _, second := range []string{":80/api/", "0.0.0.0:80/api", ":80/api//", ":80/apis", ":80/api/v2", ":80/"} {
		st := map[string]any{
			"#spec": state.SpecSystem1,
			"device.json": map[string]any{"groups": []any{map[string]any{"name": "app"}},
				"ingress": []any{
					map[string]any{"name": "a", "type": "http", "external": ":80/api", "provider": "web", "service": "api"},
					map[string]any{"name": "b", "type": "http", "external": second, "provider": "web", "service": "db"},
				}},
			"web/run.json": map[string]any{"name": "web", "type": "lxc", "config": "lxc.container.conf", "root-volume": "root.squashfs"},
			"web/services.json": map[string]any{"services": []any{
				map[string]any{"name": "db", "type": "tcp", "port": 5432},
				map[string]any{"name": "api", "type": "unix", "socket": "/run/api.sock"},
			}},
			"web/lxc.container.conf": objA, "web/root.squashfs": objB,
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		s, err := state.Parse(b, state.Options{AppEngine: true})
		if err != nil {
			continue // refused
		}
		prefixes := []string{s.Ingress[0].Prefix, s.Ingress[1].Prefix}
		reachable := false
		for _, path := range []string{"/", "/api", "/api/", "/api/x", "/apis", "/api/v2", "/other"} {
			if i, _, ok := xhttp.Match(prefixes, path); ok && i == 1 {
				reachable = true
			}
		}
		if !reachable {
			t.Errorf("rules %q and %q accepted on one listener, but rule b (prefix %q) can never be routed to", ":80/api", second, prefixes[1])
		}
	}
}
