package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/pantavisor/pv/config"
)

// procSys is where the kernel's sysctls are.
const procSys = "/proc/sys"

// errNoSysctl: the key names no sysctl of this kernel.
var errNoSysctl = errors.New("no such sysctl")

// applySysctls writes the PV_SYSCTL_* entries of the boot configuration
// (and upstream's legacy sysctl.a.b form) to the kernel, as upstream does
// at boot. Each failure is logged with its key and changes nothing else.
// Embedded mode only: an appengine host's sysctls are not ours.
func applySysctls(root string, entries []config.Pair, log *slog.Logger) {
	for _, e := range entries {
		path, err := sysctlPath(root, e.Key)
		if err == nil {
			err = os.WriteFile(path, []byte(e.Value), 0)
		}
		if err != nil {
			log.Warn("sysctl not set", "key", e.Key, "err", err)
			continue
		}
		log.Info("sysctl set", "key", e.Key, "path", path, "value", e.Value)
	}
}

// sysctlPath finds the file under root that key names. The legacy form
// sysctl.kernel.core_pattern is the path with dots for slashes. In
// PV_SYSCTL_KERNEL_CORE_PATTERN an underscore is either a slash or part
// of a name (core_pattern): the tree under root tells which, as upstream's
// documentation has it ("/proc/sys/kernel/core_pattern").
func sysctlPath(root, key string) (string, error) {
	name, legacy, ok := config.SysctlName(key)
	switch {
	case !ok:
		return "", fmt.Errorf("sysctl %s: not a sysctl key", key)
	case legacy:
		parts := strings.Split(name, ".")
		for _, p := range parts {
			if !safeSysctlName(p) {
				return "", fmt.Errorf("sysctl %s: bad name %q", key, p)
			}
		}
		path := filepath.Join(append([]string{root}, parts...)...)
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			return "", fmt.Errorf("sysctl %s: %w", key, errNoSysctl)
		}
		return path, nil
	}
	if path, ok := walkSysctl(root, strings.Split(strings.ToLower(name), "_")); ok {
		return path, nil
	}
	return "", fmt.Errorf("sysctl %s: %w", key, errNoSysctl)
}

// walkSysctl finds the file under dir named by words joined with '/' or
// '_', trying the shortest names first.
func walkSysctl(dir string, words []string) (string, bool) {
	for i := 1; i <= len(words); i++ {
		name := strings.Join(words[:i], "_")
		if !safeSysctlName(name) {
			return "", false
		}
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		switch {
		case i == len(words) && fi.Mode().IsRegular():
			return filepath.Join(dir, name), true
		case i < len(words) && fi.IsDir():
			if p, ok := walkSysctl(filepath.Join(dir, name), words[i:]); ok {
				return p, true
			}
		}
	}
	return "", false
}

// safeSysctlName says whether name can be one step of a path under
// /proc/sys without leaving it.
func safeSysctlName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
