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
