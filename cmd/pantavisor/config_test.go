package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/config"
)

// A value of the appengine --config file that is refused is logged, not
// dropped in silence.
func TestAppengineConfigRefusalsAreLogged(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pantavisor.config")
	if err := os.WriteFile(file, []byte("PV_UPDATER_COMMIT_DELAY=90s\nPV_NET_ISOLATION=maybe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cfg := loadConfig(appengineOpts{config: file}, log)
	if got := cfg.String(config.PVUpdaterCommitDelay); got != "25" {
		t.Fatalf("commit delay %q", got)
	}
	for _, key := range []string{"PV_UPDATER_COMMIT_DELAY", "PV_NET_ISOLATION"} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("bad %s in --config dropped without a log line; log:\n%s", key, buf.String())
		}
	}
}

// PV_LOG_LEVEL=4 is upstream's DEBUG: it turns debug logs on (5, ALL,
// was needed before).
func TestDebugLoggingFromUpstreamsLevels(t *testing.T) {
	for level, want := range map[string]bool{"3": false, "4": true, "5": true} {
		cfg := config.New()
		if _, err := cfg.Set(config.PVLogLevel, level, config.LevelPVConf); err != nil {
			t.Fatal(err)
		}
		if got := debugLogging(cfg); got != want {
			t.Errorf("PV_LOG_LEVEL=%s: debug %v, want %v", level, got, want)
		}
	}
}
