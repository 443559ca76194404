package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// loadOEMConfig applies the OEM configuration of revision st, whose trail
// is trailDir, <PV_OEM_NAME>/<PV_POLICY or "default">.config, at the OEM
// level, as upstream does after every state load; nothing without
// PV_OEM_NAME. The file is the state's object of that name (read from
// the content store, as the revision's other files), else the trail's
// file of that path. Its PV_SYSCTL_* entries are written in embedded mode only.
// A missing file is no error; a malformed one applies nothing and is
// logged, as is every refused entry.
func loadOEMConfig(cfg *config.Config, trailDir string, st *state.State, embedded bool, log *slog.Logger) {
	path, ok := cfg.OEMConfigPath(trailDir)
	if !ok {
		return
	}
	if st != nil {
		key, err := filepath.Rel(trailDir, path)
		if sha, found := st.Objects[filepath.ToSlash(key)]; err == nil && found {
			path = state.ObjectPath(trailDir, storage.TrailObjects(trailDir), filepath.ToSlash(key), sha)
		}
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("no OEM configuration in the revision", "looked_for", path)
		return
	}
	if err != nil {
		log.Warn("OEM configuration not read", "err", err)
		return
	}
	rep, err := cfg.LoadFile(config.LevelOEM, path, data)
	if err != nil {
		log.Error("OEM configuration not applied", "err", err)
		return
	}
	for _, w := range rep.Warnings {
		log.Warn("config", "warning", w)
	}
	for _, e := range rep.Refused {
		log.Warn("config refused", "err", e)
	}
	log.Info("OEM configuration applied", "file", path, "keys", len(rep.Applied))
	if embedded {
		applySysctls(procSys, rep.Sysctl, log)
	}
}
