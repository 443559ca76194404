//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
)

// TestReliabilityHTTPIngressDuringRestarts: an http ingress rule (:9002/)
// leads to "web", a host-network container serving HTTP on :8081, and
// four clients in the test's namespace send requests through it, each
// kind at once, as fast as they can: GETs on one keep-alive connection,
// GETs on a fresh connection each, POSTs of 64 KiB (both served on the
// proxy's plain path) and chunked POSTs (handed to net/http), while web's
// init is SIGKILLed every ~2 s (auto-recovery always). Expected: every
// answer is web's own (200, its body naming the path asked) or the
// proxy's 502 or 504, never another status or another request's body;
// after each kill every kind succeeds again within 5 s; the supervisor's
// goroutines and fds come back to their level before the kills.
func TestReliabilityHTTPIngressDuringRestarts(t *testing.T) {
	requireIsolatedNet(t)
	kills := runs(t, 50, 5)
	var done, passed int
	var fig string
	record(t, fmt.Sprintf("http ingress, 4 kinds of request at full speed, provider killed %d times", kills), &done, &passed, func() string { return fig })
	done = 1

	always := map[string]any{"policy": "always", "retry_delay": 0}
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "web", group: "app", cmd: `/bin/pvapp "web" "-addr" ":8081"`,
			run:      map[string]any{"network": map[string]any{"mode": "host"}, "exports": "services.json", "auto_recovery": always},
			services: []any{map[string]any{"name": "web", "type": "tcp", "port": 8081}}},
	})
	addDeviceJSON(t, storage, `    "ingress": [{"name": "site", "type": "http", "external": ":9002/", "provider": "web", "service": "web"}],`)
	d, pid1 := startOnLAN(t, storage)
	m := d.waitContainers("web started", 30*time.Second, statusIs(messages.StatusStarted, "web"))

	keep := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer keep.CloseIdleConnections()
	body := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB: the plain path's largest
	kinds := []struct {
		name string
		do   func(url string) (*http.Response, error)
	}{
		{"keepalive", keep.Get},
		{"fresh", fresh.Get},
		{"post", func(url string) (*http.Response, error) {
			return keep.Post(url, "application/octet-stream", bytes.NewReader(body))
		}},
		{"chunked", func(url string) (*http.Response, error) {
			// No length: sent chunked, which net/http serves.
			return fresh.Post(url, "application/octet-stream", io.MultiReader(bytes.NewReader(body)))
		}},
	}
	var wrong, okN, proxyErrs, cut [4]atomic.Int64
	var wrongSeen atomic.Value
	// one sends each kind once; it returns the first failure's reason.
	one := func(seq int) error {
		var wg sync.WaitGroup
		var first atomic.Pointer[error]
		fail := func(err error) { first.CompareAndSwap(nil, &err) }
		for i, k := range kinds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := fmt.Sprintf("/%s/%d", k.name, seq)
				resp, err := k.do("http://10.77.0.2:9002" + p)
				if err != nil {
					cut[i].Add(1)
					fail(fmt.Errorf("%s: %w", k.name, err))
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					cut[i].Add(1)
					fail(fmt.Errorf("%s: body: %w", k.name, err))
				case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
					proxyErrs[i].Add(1)
					fail(fmt.Errorf("%s: %d %q", k.name, resp.StatusCode, bytes.TrimSpace(b)))
				case resp.StatusCode == http.StatusOK && strings.HasPrefix(string(b), "hello from ") &&
					strings.HasSuffix(string(b), "(path "+p+")\n"):
					okN[i].Add(1)
					return
				default:
					wrong[i].Add(1)
					wrongSeen.Store(fmt.Sprintf("%s: %d %q", p, resp.StatusCode, b))
					fail(fmt.Errorf("%s: wrong answer %d", k.name, resp.StatusCode))
				}
			}()
		}
		wg.Wait()
		if err := first.Load(); err != nil {
			return *err
		}
		return nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for one(0) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no answer from web through the ingress before the kills")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	// Each round ends with nothing of the clients' open on the proxy,
	// so that the supervisor's level is its own.
	round := func(seq int) error {
		err := one(seq)
		keep.CloseIdleConnections()
		return err
	}
	round(0)
	// The proxy keeps up to one idle connection to web per request
	// served at once: four.
	r := killDuring(t, d, pid1, "web", kills, len(kinds), m, round)

	var per []string
	for i, k := range kinds {
		per = append(per, fmt.Sprintf("%s %d/%d/%d/%d", k.name, okN[i].Load(), proxyErrs[i].Load(), cut[i].Load(), wrong[i].Load()))
		if w := wrong[i].Load(); w > 0 {
			t.Errorf("%s: %d answers neither web's nor the proxy's 502/504, e.g. %v", k.name, w, wrongSeen.Load())
		}
		if okN[i].Load() == 0 {
			t.Errorf("%s: no request succeeded", k.name)
		}
	}
	fig = fmt.Sprintf("%d rounds of 4 (ok/502-504/cut/wrong: %s); %s", len(r.conns), strings.Join(per, ", "), r.summary())
	if !t.Failed() {
		passed = 1
	}
}
