package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// The revision's OEM configuration, <PV_OEM_NAME>/<PV_POLICY or
// default>.config in its trail, applies at the OEM level: above the
// device's pantavisor.config and policy, below the cmdline. It was never
// loaded.
func TestOEMConfigAppliesAtItsLevel(t *testing.T) {
	trail := t.TempDir()
	if err := os.MkdirAll(filepath.Join(trail, "pv-oem-test"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(trail, "pv-oem-test", "default.config"),
		[]byte("PV_UPDATER_COMMIT_DELAY=90\nPV_LOG_LEVEL=4\nPV_NO_SUCH_KEY=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.New()
	for k, v := range map[string]string{config.PVOEMName: "pv-oem-test", config.PVUpdaterCommitDelay: "30"} {
		if _, err := cfg.Set(k, v, config.LevelPVConf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cfg.Set(config.PVLogLevel, "2", config.LevelPVCmdline); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	loadOEMConfig(cfg, trail, nil, false, slog.New(slog.NewTextHandler(&buf, nil)))
	if v, _ := cfg.Get(config.PVUpdaterCommitDelay); v.Value != "90" || v.Level != config.LevelOEM {
		t.Errorf("PV_UPDATER_COMMIT_DELAY %+v, want 90 at the OEM level", v)
	}
	if got := cfg.Int(config.PVLogLevel); got != 2 {
		t.Errorf("PV_LOG_LEVEL %d: the cmdline's 2 must win over the OEM's", got)
	}
	if !strings.Contains(buf.String(), "PV_NO_SUCH_KEY") {
		t.Errorf("refused key not logged:\n%s", buf.String())
	}
}

// Without PV_OEM_NAME, or without the file, nothing changes.
func TestOEMConfigAbsent(t *testing.T) {
	cfg := config.New()
	loadOEMConfig(cfg, t.TempDir(), nil, false, slog.New(slog.DiscardHandler))
	if _, err := cfg.Set(config.PVOEMName, "none", config.LevelPVConf); err != nil {
		t.Fatal(err)
	}
	loadOEMConfig(cfg, t.TempDir(), nil, false, slog.New(slog.DiscardHandler))
	if v, _ := cfg.Get(config.PVUpdaterCommitDelay); v.Level != config.LevelDefault {
		t.Errorf("%+v", v)
	}
}

// The OEM file is read as the revision's other files are: the state's
// object of that name in the content store (a storage set up by upstream
// tools has no copy of it in the trail).
func TestOEMConfigFromTheContentStore(t *testing.T) {
	l := storage.Layout{Root: t.TempDir()}
	data := []byte("PV_UPDATER_COMMIT_DELAY=77\n")
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	if err := os.MkdirAll(filepath.Join(l.Root, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Root, "objects", sha), data, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.Trail("3"), 0o755); err != nil {
		t.Fatal(err)
	}
	st := &state.State{Objects: map[string]string{"pv-oem-test/prod.config": sha}}
	cfg := config.New()
	for k, v := range map[string]string{config.PVOEMName: "pv-oem-test", config.PVPolicy: "prod"} {
		if _, err := cfg.Set(k, v, config.LevelPVConf); err != nil {
			t.Fatal(err)
		}
	}
	loadOEMConfig(cfg, l.Trail("3"), st, false, slog.New(slog.DiscardHandler))
	if got := cfg.String(config.PVUpdaterCommitDelay); got != "77" {
		t.Errorf("PV_UPDATER_COMMIT_DELAY %q, want the OEM file's 77", got)
	}
}

// A revision may carry its OEM configuration: the state accepts the file,
// owned by no container.
func TestStateCarriesAnOEMConfig(t *testing.T) {
	doc := `{"#spec":"pantavisor-service-system@1","device.json":{"groups":[{"name":"app"}]},
		"pv-oem-test/default.config":"` + strings.Repeat("a", 64) + `"}`
	st, err := state.Parse([]byte(doc), state.Options{AppEngine: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects["pv-oem-test/default.config"] == "" {
		t.Errorf("objects %v", st.Objects)
	}
}
