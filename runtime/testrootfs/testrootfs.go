// Package testrootfs builds a minimal busybox root filesystem, and a
// squashfs image of it, for tests that run real containers. The rootfs is
// built once per test process (in a temporary directory) and shared by
// every caller; callers must treat it as read-only.
//
// It needs a statically linked busybox (Debian: busybox-static) and, for
// Squashfs, mksquashfs (Debian: squashfs-tools). It does not need root.
package testrootfs

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu      sync.Mutex
	baseDir string // temp dir holding everything built so far
	dir     string // the rootfs directory, once built
	sqfs    string // the squashfs image, once built
)

// Dir returns the path of a busybox rootfs directory: /bin holds busybox
// and a symlink per applet, /sbin/init links to busybox, /etc has passwd,
// group, hostname and an empty resolv.conf, and the usual mountpoints
// (proc, sys, dev, tmp, run, root, mnt, var) exist. It fails tb if the
// rootfs cannot be built.
func Dir(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		return dir
	}
	d, err := buildDir()
	if err != nil {
		tb.Fatalf("build test rootfs: %v", err)
	}
	dir = d
	return dir
}

// Squashfs returns the path of a squashfs image (xz) of Dir.
func Squashfs(tb testing.TB) string {
	tb.Helper()
	d := Dir(tb)
	mu.Lock()
	defer mu.Unlock()
	if sqfs != "" {
		return sqfs
	}
	img := filepath.Join(baseDir, "rootfs.squashfs")
	if err := MakeSquashfs(d, img); err != nil {
		tb.Fatalf("build test rootfs image: %v", err)
	}
	sqfs = img
	return sqfs
}

// MakeSquashfs packs the directory src into a squashfs image at dst, with
// every file owned by root, as pvr does for container roots.
func MakeSquashfs(src, dst string) error {
	tool, err := exec.LookPath("mksquashfs")
	if err != nil {
		return fmt.Errorf("find mksquashfs (apt-get install squashfs-tools): %w", err)
	}
	out, err := exec.Command(tool, src, dst, "-noappend", "-comp", "xz", "-all-root", "-no-xattrs", "-quiet").CombinedOutput()
	if err != nil {
		return fmt.Errorf("run mksquashfs: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Cleanup removes everything built so far. Call it from TestMain after
// m.Run; later calls to Dir or Squashfs build again.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if baseDir != "" {
		os.RemoveAll(baseDir)
	}
	baseDir, dir, sqfs = "", "", ""
}

func buildDir() (string, error) {
	if baseDir == "" {
		var err error
		if baseDir, err = os.MkdirTemp("", "pv-testrootfs-"); err != nil {
			return "", fmt.Errorf("create temp dir: %w", err)
		}
	}
	root := filepath.Join(baseDir, "rootfs")
	if err := Build(root); err != nil {
		return "", err
	}
	return root, nil
}

// Build makes the rootfs Dir describes at root (created if missing), for
// callers that have no testing.TB, such as the benchmarks; the caller owns
// root and removes it. Unlike Dir it builds a new tree on every call.
func Build(root string) error {
	bb, err := staticBusybox()
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "mnt", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("create rootfs dir: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return fmt.Errorf("chmod tmp: %w", err)
	}
	if err := copyFile(bb, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link applet: %w", err)
		}
	}
	if err := os.Symlink("../bin/busybox", filepath.Join(root, "sbin/init")); err != nil {
		return fmt.Errorf("link init: %w", err)
	}
	files := map[string]string{
		"etc/passwd":      "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":       "root:x:0:\nnogroup:x:65534:\n",
		"etc/hostname":    "testrootfs\n",
		"etc/resolv.conf": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write rootfs file: %w", err)
		}
	}
	return nil
}

// staticBusybox finds busybox in PATH (or /bin) and checks that it is
// statically linked, since the rootfs has no libc.
func staticBusybox() (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		bb = "/bin/busybox"
	}
	f, err := elf.Open(bb)
	if err != nil {
		return "", fmt.Errorf("open busybox (apt-get install busybox-static): %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("check busybox %s: dynamically linked (apt-get install busybox-static)", bb)
		}
	}
	return bb, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy file: %w", err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		return fmt.Errorf("copy file: %w", err)
	}
	return nil
}
