package bootloader

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
)

// AppEngine keeps the environment in <storage>/boot/appengine.txt, one
// key=value per line, for pantavisor running as an application: there is no
// real bootloader, and "reboot" is a re-exec. Whoever plays the bootloader
// there applies Env.Boot for the try-once latch.
type AppEngine struct {
	Dir string
}

var _ Backend = AppEngine{}

func (a AppEngine) path() string { return filepath.Join(a.Dir, "appengine.txt") }

// Load reads the environment; a missing file is an empty environment (a
// device that never updated boots the factory revision).
func (a AppEngine) Load() (Env, error) { return loadEnvFile(a.path(), parseEnv) }

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
	var b strings.Builder
	for _, k := range env.keys() {
		if err := checkVar(k, env[k], "\n\x00"); err != nil {
			return fmt.Errorf("save appengine.txt: %w", err)
		}
		// Lines are trimmed and # lines skipped when read back.
		if strings.ContainsAny(k, " \t") || strings.HasPrefix(k, "#") {
			return fmt.Errorf("save appengine.txt: variable name %q holds white space or starts with '#'", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, env[k])
	}
	// No bootloader reads it: pantavisor does, through the kernel.
	return writeForBootloader(a.path(), []byte(b.String()), 0o644, true)
}

// Install sets pv_try=rev.
func (a AppEngine) Install(rev string) (bool, error) { return install(a, rev) }

// Commit sets pv_rev=rev and unsets pv_try.
func (a AppEngine) Commit(rev string) error { return commit(a, rev) }

// Fail unsets pv_try.
func (a AppEngine) Fail() error { return fail(a) }
