package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/blockdev"
)

// Modules load after what they depend on, each once; a built-in one needs
// nothing; an unknown one is an error naming it.
func TestLoadModuleOrder(t *testing.T) {
	dir := t.TempDir()
	dep := strings.Join([]string{
		"kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko",
		"kernel/net/802/stp.ko: kernel/net/llc/llc.ko",
		"kernel/net/llc/llc.ko:",
		"kernel/fs/squashfs/squashfs.ko:",
		"kernel/drivers/net/veth-x.ko:",
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deps, err := readModulesDep(filepath.Join(dir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	load := func(path string) error {
		order = append(order, strings.TrimPrefix(path, dir+"/"))
		return nil
	}
	loaded := map[string]bool{}
	for _, m := range []string{"bridge", "stp", "squashfs", "veth_x", "ext4"} {
		if err := loadModule(dir, deps, m, loaded, 0, load); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	want := []string{"kernel/net/llc/llc.ko", "kernel/net/802/stp.ko", "kernel/net/bridge/bridge.ko",
		"kernel/fs/squashfs/squashfs.ko", "kernel/drivers/net/veth-x.ko"}
	if !slices.Equal(order, want) {
		t.Errorf("load order %v, want %v", order, want)
	}
	if err := loadModule(dir, deps, "nosuch", loaded, 0, load); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("unknown module: %v", err)
	}
}

// A module that refuses its command-line parameters (EINVAL) is loaded
// without them, and the refusal is logged; another error stands.
func TestLoadWithParams(t *testing.T) {
	var calls []string
	load := func(refuse error) func(string, string) error {
		return func(path, params string) error {
			calls = append(calls, params)
			if params != "" {
				return refuse
			}
			return nil
		}
	}
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	if err := loadWithParams("/m/softdog.ko", "soft_margin=x", load(unix.EINVAL), log); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(calls, []string{"soft_margin=x", ""}) || !strings.Contains(logged.String(), `module=softdog params="soft_margin=x"`) {
		t.Errorf("calls %q, log %q", calls, logged.String())
	}
	calls = nil
	if err := loadWithParams("/m/softdog.ko", "soft_margin=1", load(unix.ENOEXEC), log); !errors.Is(err, unix.ENOEXEC) || len(calls) != 1 {
		t.Errorf("another error: %v after %q", err, calls)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/squashfs/squashfs.ko":  "squashfs",
		"kernel/drivers/net/veth-x.ko.xz": "veth_x",
		"nf-nat":                          "nf_nat",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSystemPath(t *testing.T) {
	for in, want := range map[string]string{
		"":               "/usr/sbin:/usr/bin:/sbin:/bin",
		"/sbin:/bin":     "/sbin:/bin:/usr/sbin:/usr/bin",
		"/opt/x::/opt/x": "/opt/x:/usr/sbin:/usr/bin:/sbin:/bin",
	} {
		if got := systemPath(in); got != want {
			t.Errorf("systemPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// A path is waited for as it is; a tag on no device is waited for up to
// PV_STORAGE_WAIT and reported as not found; a tag no wait can resolve
// fails at once.
func TestWaitStorage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if dev, _, err := waitStorage(path, 0); err != nil || dev != path {
		t.Errorf("waitStorage(%s) = %q, %v; want the path", path, dev, err)
	}
	if _, _, err := waitStorage(path+".missing", 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("waitStorage(missing path) = %v, want ErrNotExist", err)
	}

	start := time.Now()
	_, _, err := waitStorage("LABEL=pv-no-such-label-4f1d", 200*time.Millisecond)
	if !errors.Is(err, blockdev.ErrNotFound) || !strings.Contains(err.Error(), "PV_STORAGE_WAIT") {
		t.Errorf("waitStorage(LABEL=…) = %v, want ErrNotFound after PV_STORAGE_WAIT", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("gave up after %v, before PV_STORAGE_WAIT", waited)
	}

	start = time.Now()
	_, _, err = waitStorage("PARTUUID=0011aabb-01/PARTNROFF=1", 10*time.Second)
	if err == nil || errors.Is(err, blockdev.ErrNotFound) || !strings.Contains(err.Error(), "PARTNROFF") {
		t.Errorf("waitStorage(PARTUUID=…/PARTNROFF=1) = %v, want a refusal naming it", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("a refusal waited %v", waited)
	}
}
