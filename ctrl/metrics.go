package ctrl

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pantavisor/pv/messages"
)

// routeUnmatched is the route label of requests that matched no route, so
// the request counter has one series per route, never one per raw path.
const routeUnmatched = "unmatched"

// metrics is a server's Prometheus registry: its own, not the global
// default one, so nothing registered elsewhere in the process leaks into
// GET /metrics and two servers do not collide.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	handler  http.Handler

	// counters holds each (route, status) series once looked up: building
	// its labels and hashing them into the CounterVec cost allocations and
	// a lock on every request otherwise. The series are never deleted, so
	// a held counter stays the one GET /metrics reports.
	mu       sync.RWMutex
	counters map[countKey]prometheus.Counter
}

// countKey names one series of the request counter.
type countKey struct {
	rt     *route
	status int
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pv_ctrl_requests_total",
			Help: "Control socket requests answered, by route pattern and HTTP status code.",
		}, []string{"route", "code"}),
	}
	m.reg.MustRegister(m.requests, backendCollector{s},
		// The supervisor's own leaks are what a soak watches for: a
		// goroutine or descriptor per crash, per update or per client
		// would end a device after weeks.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pv_supervisor_goroutines",
			Help: "Goroutines of the supervisor process.",
		}, func() float64 { return float64(runtime.NumGoroutine()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pv_supervisor_open_fds",
			Help: "Open file descriptors of the supervisor process.",
		}, openFds))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: promLogger{s},
		// A scrape with a backend error still serves the other metrics;
		// only a scrape with none is a 500.
		ErrorHandling:      promhttp.ContinueOnError,
		DisableCompression: true,
	})
	return m
}

// count records one request of route rt (nil: no route matched) answered
// status (0: aborted before an answer).
func (m *metrics) count(rt *route, status int) {
	key := countKey{rt, status}
	m.mu.RLock()
	c, ok := m.counters[key]
	m.mu.RUnlock()
	if !ok {
		c = m.series(rt, status)
		m.mu.Lock()
		if m.counters == nil {
			m.counters = make(map[countKey]prometheus.Counter)
		}
		m.counters[key] = c
		m.mu.Unlock()
	}
	c.Inc()
}

// series is the request counter's series for route rt answered status.
func (m *metrics) series(rt *route, status int) prometheus.Counter {
	label := routeUnmatched
	if rt != nil {
		label = rt.method + " " + rt.pattern
	}
	code := "aborted" // the answer never began
	if status != 0 {
		code = strconv.Itoa(status)
	}
	return m.requests.WithLabelValues(label, code)
}

// promLogger sends promhttp's errors to the server's log.
type promLogger struct{ s *Server }

func (l promLogger) Println(v ...any) {
	l.s.log.Warn("ctrl: metrics", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}

// The metrics read from the Backend at scrape time.
var (
	descContainerStatus = prometheus.NewDesc("pv_container_status",
		"1 for each container's current status.", []string{"container", "group", "status"}, nil)
	descRecoveryRetries = prometheus.NewDesc("pv_container_recovery_retries",
		"Retries of the container's auto_recovery in its current window.", []string{"container"}, nil)
	descRestarts = prometheus.NewDesc("pv_actor_supervised_restarts_total",
		"Restarts of what an actor supervises (a container's process for a container actor).", []string{"actor", "kind"}, nil)
	descActorRestarts = prometheus.NewDesc("pv_actor_restarts_total",
		"Restarts of the actor itself after a Go panic.", []string{"actor", "kind"}, nil)
	descBootSeconds = prometheus.NewDesc("pv_revision_boot_seconds",
		"Time the running revision took to boot (every group up to its goal).", nil, nil)
	descUpdating = prometheus.NewDesc("pv_update_in_progress",
		"1 while an update is under test, 0 otherwise.", nil, nil)
	descRevision = prometheus.NewDesc("pv_revision_info",
		"1, labelled with the running, committed and tried revisions.", []string{"running", "committed", "tried"}, nil)
	descLinkUp = prometheus.NewDesc("pv_link_established",
		"1 while an xconnect link is established (both ends run and the consumer end is in place).", linkLabels, nil)
	descLinkConns = prometheus.NewDesc("pv_link_connections_total",
		"Connections an xconnect link accepted from its consumer.", linkLabels, nil)
	descLinkActive = prometheus.NewDesc("pv_link_active_connections",
		"Connections an xconnect link carries now.", linkLabels, nil)
	descLinkBytes = prometheus.NewDesc("pv_link_bytes_total",
		"Bytes an xconnect link carried, by direction (up: consumer to provider).", append(linkLabels[:3:3], "direction"), nil)
	descLinkErrors = prometheus.NewDesc("pv_link_errors_total",
		"Connections of an xconnect link that failed (provider unreachable, I/O error).", linkLabels, nil)
)

var linkLabels = []string{"consumer", "service", "type"}

var (
	descIngressUp = prometheus.NewDesc("pv_ingress_listening",
		"1 while an ingress listener is bound.", ingressLabels, nil)
	descIngressConns = prometheus.NewDesc("pv_ingress_connections_total",
		"Connections an ingress listener accepted.", ingressLabels, nil)
	descIngressBytes = prometheus.NewDesc("pv_ingress_bytes_total",
		"Bytes an ingress listener carried, by direction (in: client to container).", append(ingressLabels[:2:2], "direction"), nil)
	descIngressErrors = prometheus.NewDesc("pv_ingress_errors_total",
		"Connections or requests of an ingress listener that failed (backend down, timeout).", ingressLabels, nil)
)

var ingressLabels = []string{"listen", "type"}

// backendCollector reads containers, the actor tree and revisions from the
// Backend at each scrape; a source that fails is reported as an invalid
// metric (logged, the others are still served).
type backendCollector struct{ s *Server }

func (c backendCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descContainerStatus, descRecoveryRetries, descRestarts,
		descActorRestarts, descBootSeconds, descUpdating, descRevision,
		descLinkUp, descLinkConns, descLinkActive, descLinkBytes, descLinkErrors,
		descIngressUp, descIngressConns, descIngressBytes, descIngressErrors} {
		ch <- d
	}
}

func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	// The registry collects in its own goroutine, beyond recoverHandler.
	defer func() {
		if v := recover(); v != nil {
			c.s.log.Error("ctrl: metrics collector panicked", "panic", v, "stack", string(debug.Stack()))
			ch <- prometheus.NewInvalidMetric(descRestarts, fmt.Errorf("collector panicked: %v", v))
		}
	}()
	b := c.s.b
	if cs, err := b.Containers(); err != nil {
		ch <- prometheus.NewInvalidMetric(descContainerStatus, err)
	} else {
		for i := range cs {
			ci := &cs[i]
			ch <- prometheus.MustNewConstMetric(descContainerStatus, prometheus.GaugeValue, 1, ci.Name, ci.Group, string(ci.Status))
			ch <- prometheus.MustNewConstMetric(descRecoveryRetries, prometheus.GaugeValue, float64(ci.AutoRecovery.CurrentRetries), ci.Name)
		}
	}
	if n := b.Tree(); n != nil {
		collectTree(ch, n)
		if d, err := time.ParseDuration(n.Info["booted_in"]); err == nil {
			ch <- prometheus.MustNewConstMetric(descBootSeconds, prometheus.GaugeValue, d.Seconds())
		}
	}
	if r, err := b.Revisions(); err != nil {
		ch <- prometheus.NewInvalidMetric(descUpdating, err)
	} else if r != nil {
		up := 0.0
		if r.Updating {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUpdating, prometheus.GaugeValue, up)
		ch <- prometheus.MustNewConstMetric(descRevision, prometheus.GaugeValue, 1, r.Running, r.Committed, r.Tried)
	}
}

// collectTree emits the restart counters of n and its descendants.
func collectTree(ch chan<- prometheus.Metric, n *messages.Node) {
	seen := make(map[string]bool)
	var walk func(*messages.Node)
	walk = func(n *messages.Node) {
		if n == nil || seen[n.Path] {
			return // two nodes with one path would fail the whole scrape
		}
		seen[n.Path] = true
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(n.Restarts), n.Path, n.Kind)
		ch <- prometheus.MustNewConstMetric(descActorRestarts, prometheus.CounterValue, float64(n.ActorRestarts), n.Path, n.Kind)
		switch n.Kind {
		case "link":
			collectLink(ch, n)
		case "ingress":
			collectIngress(ch, n)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(n)
}

// collectIngress emits a listener's traffic from its node of the actor
// tree.
func collectIngress(ch chan<- prometheus.Metric, n *messages.Node) {
	lv := []string{n.Info["listen"], n.Info["type"]}
	up := 0.0
	if n.Status == "listening" {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descIngressUp, prometheus.GaugeValue, up, lv...)
	ch <- prometheus.MustNewConstMetric(descIngressConns, prometheus.CounterValue, infoNum(n, "connections"), lv...)
	ch <- prometheus.MustNewConstMetric(descIngressErrors, prometheus.CounterValue, infoNum(n, "errors"), lv...)
	ch <- prometheus.MustNewConstMetric(descIngressBytes, prometheus.CounterValue, infoNum(n, "bytes_in"), append(lv, "in")...)
	ch <- prometheus.MustNewConstMetric(descIngressBytes, prometheus.CounterValue, infoNum(n, "bytes_out"), append(lv, "out")...)
}

// infoNum is a number of a node's Info, 0 when absent.
func infoNum(n *messages.Node, key string) float64 {
	v, _ := strconv.ParseFloat(n.Info[key], 64)
	return v
}

// collectLink emits a link's traffic from its node of the actor tree
// (the link actor puts its counters in Info).
func collectLink(ch chan<- prometheus.Metric, n *messages.Node) {
	lv := []string{n.Info["consumer"], n.Info["service"], n.Info["type"]}
	num := func(k string) float64 { return infoNum(n, k) }
	up := 0.0
	if n.Status == "established" {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descLinkUp, prometheus.GaugeValue, up, lv...)
	ch <- prometheus.MustNewConstMetric(descLinkConns, prometheus.CounterValue, num("connections"), lv...)
	ch <- prometheus.MustNewConstMetric(descLinkActive, prometheus.GaugeValue, num("active"), lv...)
	ch <- prometheus.MustNewConstMetric(descLinkErrors, prometheus.CounterValue, num("errors"), lv...)
	ch <- prometheus.MustNewConstMetric(descLinkBytes, prometheus.CounterValue, num("bytes_up"), append(lv, "up")...)
	ch <- prometheus.MustNewConstMetric(descLinkBytes, prometheus.CounterValue, num("bytes_down"), append(lv, "down")...)
}

// getMetrics answers GET /metrics in Prometheus' text format.
func (s *Server) getMetrics(w http.ResponseWriter, r *http.Request, _ *call) {
	s.metrics.handler.ServeHTTP(w, r)
}

// openFds counts the entries of /proc/self/fd (-1 when it cannot be read).
func openFds() float64 {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return -1
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return -1
	}
	return float64(len(names) - 1) // not d itself
}
