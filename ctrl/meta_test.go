package ctrl

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/pantavisor/pv/config"
)

// metaServer serves a fake backend with cfg and the metadata directories
// run and store until the test ends (or stop is called).
func metaServer(t *testing.T, cfg *config.Config, run, store string) (client *http.Client, stop func()) {
	t.Helper()
	s := New(newFakeBackend(), fixedResolver("", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.SetMeta(run, store); err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		s.SetConfig(cfg)
	}
	sock, stop := serve(t, s)
	return unixClient(sock), stop
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMetaRequests(t *testing.T) {
	for _, kind := range []struct{ path, run, cache, notFound string }{
		{"/user-meta", "user-meta", "cache/meta", msgNoUserMeta},
		{"/device-meta", "device-meta", "cache/devmeta", msgNoDeviceMeta},
	} {
		t.Run(kind.run, func(t *testing.T) {
			run, store := t.TempDir(), t.TempDir()
			client, _ := metaServer(t, nil, run, store)
			cases := []struct {
				name, method, path, body string
				status                   int
				want                     string // exact body when set
			}{
				{"empty list", "GET", kind.path, "", 200, "{}"},
				{"put", "PUT", kind.path + "/app.level", "debug", 200, ""},
				{"put replaces", "PUT", kind.path + "/pantahub.claimed", "0", 200, ""},
				{"put again", "PUT", kind.path + "/pantahub.claimed", "1", 200, ""},
				{"list", "GET", kind.path, "", 200, `{"app.level":"debug","pantahub.claimed":"1"}`},
				{"empty value", "PUT", kind.path + "/k", "", 400, errJSON(msgNoMetaData)},
				{"too large", "PUT", kind.path + "/k", strings.Repeat("v", maxMetaValue+1), 413, errJSON(msgTooLarge)},
				{"largest", "PUT", kind.path + "/big", strings.Repeat("v", maxMetaValue), 200, ""},
				{"dot dot", "PUT", kind.path + "/..", "x", 400, errJSON(`Bad meta key \"..\": starts with a dot`)},
				{"hidden", "PUT", kind.path + "/.k", "x", 400, errJSON(`Bad meta key \".k\": starts with a dot`)},
				{"escaped slash", "PUT", kind.path + "/..%2Fescape", "x", 400, ""},
				{"backslash", "PUT", kind.path + `/a\b`, "x", 400, ""},
				{"control", "PUT", kind.path + "/a%0Ab", "x", 400, errJSON(`Bad meta key \"a\\nb\": contains a control character`)},
				{"long key", "PUT", kind.path + "/" + strings.Repeat("k", maxMetaKey+1), "x", 400, ""},
				{"delete", "DELETE", kind.path + "/app.level", "", 200, ""},
				{"delete missing", "DELETE", kind.path + "/app.level", "", 404, errJSON(kind.notFound)},
				{"delete bad key", "DELETE", kind.path + "/..", "", 400, ""},
				{"no key", "PUT", kind.path + "/", "x", 400, ""},
				{"wrong method", "POST", kind.path + "/k", "x", 400, errJSON(msgMethod)},
			}
			for _, c := range cases {
				got := do(t, client, c.method, c.path, c.body)
				if got.status != c.status || (c.want != "" && got.body != c.want) {
					t.Errorf("%s: %s %s = %d %s, want %d %s", c.name, c.method, c.path, got.status, got.body, c.status, c.want)
				}
			}
			for _, dir := range []string{filepath.Join(run, kind.run), filepath.Join(store, kind.cache)} {
				if got := files(t, dir); strings.Join(got, ",") != "big,pantahub.claimed" {
					t.Errorf("%s holds %q", dir, got)
				}
				if got := readFile(t, filepath.Join(dir, "pantahub.claimed")); got != "1" {
					t.Errorf("%s/pantahub.claimed = %q", dir, got)
				}
			}
			if _, err := os.Stat(filepath.Join(run, "escape")); err == nil {
				t.Error("a key escaped its directory")
			}
		})
	}
}

// TestMetaPersists checks the metadata outlives the server: a new server
// on the same directories (the run directory emptied, as by a reboot)
// serves and republishes it.
func TestMetaPersists(t *testing.T) {
	run, store := t.TempDir(), t.TempDir()
	client, stop := metaServer(t, nil, run, store)
	for _, p := range []string{"/user-meta/a", "/device-meta/b"} {
		if got := do(t, client, "PUT", p, "v"+p); got.status != 200 {
			t.Fatalf("PUT %s: %d %s", p, got.status, got.body)
		}
	}
	stop()
	if err := os.RemoveAll(run); err != nil {
		t.Fatal(err)
	}
	// A leftover file in a run directory that nothing backs is removed.
	if err := os.MkdirAll(filepath.Join(run, "user-meta"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "user-meta", "stale"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	client, _ = metaServer(t, nil, run, store)
	if got := do(t, client, "GET", "/user-meta", ""); got.body != `{"a":"v/user-meta/a"}` {
		t.Errorf("user-meta after restart: %s", got.body)
	}
	if got := do(t, client, "GET", "/device-meta", ""); got.body != `{"b":"v/device-meta/b"}` {
		t.Errorf("device-meta after restart: %s", got.body)
	}
	if got := files(t, filepath.Join(run, "user-meta")); strings.Join(got, ",") != "a" {
		t.Errorf("run/user-meta holds %q", got)
	}
	if got := readFile(t, filepath.Join(run, "device-meta", "b")); got != "v/device-meta/b" {
		t.Errorf("run/device-meta/b = %q", got)
	}
}

// TestUserMetaOverridesConfig checks user-meta writes configuration at
// LevelMeta, at runtime and again at the next start; device-meta does not.
func TestUserMetaOverridesConfig(t *testing.T) {
	run, store := t.TempDir(), t.TempDir()
	cfg := config.New()
	if _, err := cfg.Set(config.PVLogLevel, "2", config.LevelPVConf); err != nil {
		t.Fatal(err)
	}
	client, stop := metaServer(t, cfg, run, store)
	if got := do(t, client, "PUT", "/device-meta/"+config.PVLogLevel, "4"); got.status != 200 {
		t.Fatalf("PUT device-meta: %d %s", got.status, got.body)
	}
	if v, _ := cfg.Get(config.PVLogLevel); v.Value != "2" || v.Level != config.LevelPVConf {
		t.Fatalf("device-meta changed the configuration: %+v", v)
	}
	// Keys that are not configuration are kept as metadata only.
	for _, p := range []string{"/user-meta/" + config.PVLogLevel, "/user-meta/not.a.key"} {
		if got := do(t, client, "PUT", p, "5"); got.status != 200 {
			t.Fatalf("PUT %s: %d %s", p, got.status, got.body)
		}
	}
	if v, _ := cfg.Get(config.PVLogLevel); v.Value != "5" || v.Level != config.LevelMeta {
		t.Fatalf("after PUT user-meta: %+v", v)
	}
	var entries []config.Value
	if err := json.Unmarshal([]byte(do(t, client, "GET", "/config2", "").body), &entries); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if e.Key == config.PVLogLevel {
			found = e.Value == "5" && e.Level == config.LevelMeta
		}
	}
	if !found {
		t.Errorf("GET /config2 does not show %s=5 at metadata", config.PVLogLevel)
	}
	stop()

	// Next start: the stored user-meta is applied whether the config
	// comes before or after the metadata.
	cfg2 := config.New()
	metaServer(t, cfg2, run, store)
	if v, _ := cfg2.Get(config.PVLogLevel); v.Value != "5" || v.Level != config.LevelMeta {
		t.Errorf("after restart (meta first): %+v", v)
	}
	cfg3 := config.New()
	s := New(newFakeBackend(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.SetConfig(cfg3)
	if err := s.SetMeta(run, store); err != nil {
		t.Fatal(err)
	}
	if v, _ := cfg3.Get(config.PVLogLevel); v.Value != "5" || v.Level != config.LevelMeta {
		t.Errorf("after restart (config first): %+v", v)
	}
}

func TestConfigEndpoints(t *testing.T) {
	cfg := config.New()
	client, _ := metaServer(t, cfg, t.TempDir(), t.TempDir())
	var legacy map[string]any
	if err := json.Unmarshal([]byte(do(t, client, "GET", "/config", "").body), &legacy); err != nil {
		t.Fatal(err)
	}
	if len(legacy) != len(cfg.Legacy()) || legacy["log.level"] == nil {
		t.Errorf("GET /config: %d keys, log.level %v", len(legacy), legacy["log.level"])
	}
	var all []config.Value
	if err := json.Unmarshal([]byte(do(t, client, "GET", "/config2", "").body), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != len(cfg.All()) {
		t.Errorf("GET /config2: %d keys, want %d", len(all), len(cfg.All()))
	}
}

// TestNoConfigNoMeta checks a server given neither answers 500 with a
// clear message instead of failing.
func TestNoConfigNoMeta(t *testing.T) {
	s := New(newFakeBackend(), fixedResolver("", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/config", msgNoConfig},
		{"GET", "/config2", msgNoConfig},
		{"GET", "/user-meta", msgNoMeta},
		{"PUT", "/device-meta/k", msgNoMeta},
		{"DELETE", "/user-meta/k", msgNoMeta},
	} {
		rt, args, _ := s.routes.match(c.method, c.path)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, "http://localhost"+c.path, strings.NewReader("v"))
		rt.handle(s, rec, req, &call{args: args})
		if rec.Code != 500 || rec.Body.String() != errJSON(c.want) {
			t.Errorf("%s %s = %d %s", c.method, c.path, rec.Code, rec.Body.String())
		}
	}
}

func TestBuildInfo(t *testing.T) {
	client, _ := metaServer(t, nil, t.TempDir(), t.TempDir())
	got := do(t, client, "GET", "/buildinfo", "")
	if got.status != 200 || !strings.HasPrefix(got.header.Get("Content-Type"), "text/plain") || !strings.HasPrefix(got.body, "go\t") {
		t.Errorf("GET /buildinfo = %d %q %q", got.status, got.header.Get("Content-Type"), got.body)
	}
	readBuildInfo = func() (*debug.BuildInfo, bool) { return nil, false }
	t.Cleanup(func() { readBuildInfo = debug.ReadBuildInfo })
	if got := do(t, client, "GET", "/buildinfo", ""); got.status != 500 {
		t.Errorf("without build info: %d %s", got.status, got.body)
	}
}

func TestDaemonsAndGraph(t *testing.T) {
	client, _ := metaServer(t, nil, t.TempDir(), t.TempDir())
	for _, c := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/daemons", "", 200, "[]"},
		{"GET", "/xconnect-graph", "", 200, "[]"},
		{"GET", "/drivers", "", 200, "[]"},
		{"PUT", "/daemons/pv-xconnect", `{"action":"start"}`, 404, errJSON("Daemon not found")},
		{"PUT", "/daemons/pv-xconnect", `{"action":"bogus"}`, 404, errJSON("Daemon not found")},
		{"PUT", "/daemons/pv-xconnect", "", 400, errJSON("No data")},
		{"PUT", "/daemons/pv-xconnect", "{", 400, errJSON("Invalid JSON")},
		{"PUT", "/daemons/pv-xconnect", "{}", 400, errJSON("Missing 'action' field")},
		{"PUT", "/daemons/x", strings.Repeat(" ", 1025), 413, errJSON(msgTooLarge)},
	} {
		got := do(t, client, c.method, c.path, c.body)
		if got.status != c.status || got.body != c.want {
			t.Errorf("%s %s %q = %d %s, want %d %s", c.method, c.path, c.body, got.status, got.body, c.status, c.want)
		}
	}
}

// Keys are bounded: a new one past the bound is refused with 507 and
// nothing stored, a kept one can still be replaced, and the store loads
// at the next start. Before, any number was taken, and past what load
// reads the next start refused all metadata.
func TestMetaKeysBounded(t *testing.T) {
	defer func(n int) { metaMaxKeys = n }(metaMaxKeys)
	metaMaxKeys = 3
	run, store := t.TempDir(), t.TempDir()
	client, stop := metaServer(t, nil, run, store)
	put := func(key, value string) (int, string) {
		req, _ := http.NewRequest("PUT", "http://localhost/user-meta/"+key, strings.NewReader(value))
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, k := range []string{"a", "b", "c"} {
		if code, body := put(k, "1"); code != 200 {
			t.Fatalf("put %s: %d %s", k, code, body)
		}
	}
	if code, body := put("d", "1"); code != http.StatusInsufficientStorage || body != errJSON(msgTooManyMeta) {
		t.Errorf("a fourth key: %d %s, want 507 %s", code, body, errJSON(msgTooManyMeta))
	}
	if _, err := os.Stat(filepath.Join(store, "cache/meta/d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused key was stored: %v", err)
	}
	if code, body := put("b", "2"); code != 200 {
		t.Errorf("replacing a kept key: %d %s", code, body)
	}
	stop()
	s := New(newFakeBackend(), fixedResolver("", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.SetMeta(run, store); err != nil {
		t.Errorf("next start: %v", err)
	}
}
