package ctrl

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/pantavisor/pv/messages"
)

func TestMetrics(t *testing.T) {
	b := newFakeBackend()
	b.containers[1].AutoRecovery.CurrentRetries = 2
	b.tree = &messages.Node{Path: "root", Kind: "root", Status: "running", Info: map[string]string{"booted_in": "1.5s"},
		Children: []*messages.Node{{Path: "root/rev-0", Kind: "revision", Children: []*messages.Node{
			{Path: "root/rev-0/app", Kind: "container", Restarts: 3, ActorRestarts: 1},
			{Path: "root/rev-0/link:app:bus", Kind: "link", Status: "established", Info: map[string]string{
				"consumer": "app", "service": "bus", "type": "dbus", "connections": "4", "active": "1",
				"bytes_up": "100", "bytes_down": "2000", "errors": "1"}},
			{Path: "root/rev-0/ingress:0.0.0.0:80", Kind: "ingress", Status: "failed", Info: map[string]string{
				"listen": "0.0.0.0:80", "type": "http", "connections": "7", "bytes_in": "10", "bytes_out": "20", "errors": "2"}},
		}}}}
	b.revs = messages.RevisionsReply{Running: "1", Committed: "0", Tried: "1", Updating: true}
	client := unixClient(startServer(t, b, fixedResolver("", nil)))
	do(t, client, "GET", "/containers", "")
	do(t, client, "GET", "/containers", "")
	do(t, client, "PUT", "/containers/app", `{"action":"bogus"}`)
	do(t, client, "GET", "/no/such/path/1", "")
	do(t, client, "GET", "/no/such/path/2", "")

	got := do(t, client, "GET", "/metrics", "")
	if got.status != http.StatusOK || !strings.HasPrefix(got.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %s", got.status, got.header.Get("Content-Type"))
	}
	for _, want := range []string{
		`pv_container_status{container="app",group="app",status="STARTED"} 1`,
		`pv_container_status{container="mgmt-ctr",group="platform",status="READY"} 1`,
		`pv_container_recovery_retries{container="app"} 2`,
		`pv_actor_supervised_restarts_total{actor="root/rev-0/app",kind="container"} 3`,
		`pv_actor_restarts_total{actor="root/rev-0/app",kind="container"} 1`,
		`pv_revision_boot_seconds 1.5`,
		`pv_link_established{consumer="app",service="bus",type="dbus"} 1`,
		`pv_link_connections_total{consumer="app",service="bus",type="dbus"} 4`,
		`pv_link_active_connections{consumer="app",service="bus",type="dbus"} 1`,
		`pv_link_bytes_total{consumer="app",direction="down",service="bus",type="dbus"} 2000`,
		`pv_link_errors_total{consumer="app",service="bus",type="dbus"} 1`,
		`pv_ingress_listening{listen="0.0.0.0:80",type="http"} 0`,
		`pv_ingress_connections_total{listen="0.0.0.0:80",type="http"} 7`,
		`pv_ingress_bytes_total{direction="out",listen="0.0.0.0:80",type="http"} 20`,
		`pv_ingress_errors_total{listen="0.0.0.0:80",type="http"} 2`,
		`pv_update_in_progress 1`,
		`pv_revision_info{committed="0",running="1",tried="1"} 1`,
		`pv_ctrl_requests_total{code="200",route="GET /containers"} 2`,
		`pv_ctrl_requests_total{code="400",route="PUT /containers/{}"} 1`,
		// Raw paths never become labels.
		`pv_ctrl_requests_total{code="400",route="unmatched"} 2`,
		"# TYPE pv_supervisor_goroutines gauge",
		"# TYPE pv_supervisor_open_fds gauge",
	} {
		if !strings.Contains(got.body, want+"\n") {
			t.Errorf("no %s in\n%s", want, got.body)
		}
	}
	if strings.Contains(got.body, "/no/such") || strings.Contains(got.body, "go_goroutines") {
		t.Errorf("raw path or global registry in metrics:\n%s", got.body)
	}
}

// TestMetricsBackendError serves what it can when a source fails.
func TestMetricsBackendError(t *testing.T) {
	b := newFakeBackend()
	b.containersErr = errors.New("actor tree down")
	client := unixClient(startServer(t, b, fixedResolver("", nil)))
	got := do(t, client, "GET", "/metrics", "")
	if got.status != http.StatusOK || !strings.Contains(got.body, "pv_update_in_progress 0\n") ||
		strings.Contains(got.body, "pv_container_status") {
		t.Errorf("GET /metrics = %d\n%s", got.status, got.body)
	}
}

// TestMetricsCollectorPanic keeps the process up when the backend panics
// in the registry's own goroutine.
func TestMetricsCollectorPanic(t *testing.T) {
	b := newFakeBackend()
	b.panicTree = true
	client := unixClient(startServer(t, b, fixedResolver("", nil)))
	if got := do(t, client, "GET", "/metrics", ""); got.status != http.StatusOK || !strings.Contains(got.body, "pv_container_status") {
		t.Errorf("GET /metrics = %d\n%s", got.status, got.body)
	}
}
