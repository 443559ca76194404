// Package bootloader reads and writes the variables that select the revision
// to boot (pv_rev, pv_try). Each backend keeps them where its bootloader
// reads them; this package holds what all backends share.
package bootloader

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pantavisor/pv/storage"
)

// Env is a set of bootloader variables.
type Env map[string]string

// Revision returns the revision to boot now: pv_try when an update is being
// tried, else pv_rev, else the factory revision "0".
func (e Env) Revision() string {
	if t := e["pv_try"]; t != "" {
		return t
	}
	if r := e["pv_rev"]; r != "" {
		return r
	}
	return "0"
}

// AppEngine keeps the environment in <storage>/boot/appengine.txt, one
// key=value per line, for pantavisor running as an application: there is no
// real bootloader, and "reboot" is a re-exec.
type AppEngine struct {
	Dir string
}

func (a AppEngine) path() string { return filepath.Join(a.Dir, "appengine.txt") }

// Load reads the environment; a missing file is an empty environment (a
// device that never updated boots the factory revision).
func (a AppEngine) Load() (Env, error) {
	data, err := os.ReadFile(a.path())
	if os.IsNotExist(err) {
		return Env{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read bootloader env: %w", err)
	}
	env, err := parseEnv(data)
	if err != nil {
		return nil, fmt.Errorf("read bootloader env %s: %w", a.path(), err)
	}
	return env, nil
}

// parseEnv reads key=value lines; blank lines and # comments are skipped.
func parseEnv(data []byte) (Env, error) {
	env := Env{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("line %d: want key=value", n)
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return env, nil
}

// Save writes the environment crash-safely.
func (a AppEngine) Save(env Env) error {
	if err := os.MkdirAll(a.Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", a.Dir, err)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "= \t\n") || strings.ContainsAny(env[k], "\n") {
			return fmt.Errorf("save bootloader env: bad variable %q=%q", k, env[k])
		}
		fmt.Fprintf(&b, "%s=%s\n", k, env[k])
	}
	return storage.WriteFileAtomic(a.path(), []byte(b.String()), 0o644)
}
