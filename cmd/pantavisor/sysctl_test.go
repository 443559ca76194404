package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/config"
)

// sysTree makes a /proc/sys-like tree of empty files.
func sysTree(t *testing.T, files ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSysctlPath(t *testing.T) {
	root := sysTree(t, "kernel/core_pattern", "kernel/panic", "net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter",
		"vm/dirty_ratio")
	for key, want := range map[string]string{
		"PV_SYSCTL_KERNEL_CORE_PATTERN":         "kernel/core_pattern",
		"pv_sysctl_kernel_panic":                "kernel/panic",
		"PV_SYSCTL_NET_IPV4_IP_FORWARD":         "net/ipv4/ip_forward",
		"PV_SYSCTL_NET_IPV4_CONF_ALL_RP_FILTER": "net/ipv4/conf/all/rp_filter",
		"sysctl.vm.dirty_ratio":                 "vm/dirty_ratio",
	} {
		got, err := sysctlPath(root, key)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("sysctlPath(%s) = %q, %v; want %s", key, got, err, want)
		}
	}
	for _, key := range []string{"PV_SYSCTL_KERNEL_NO_SUCH", "PV_SYSCTL_KERNEL", "sysctl.kernel", "sysctl.kernel.nothere",
		"sysctl....kernel.panic", "PV_SYSCTL_.._.._ETC_PASSWD", "sysctl..", "PV_SYSCTL__KERNEL_PANIC"} {
		if got, err := sysctlPath(root, key); err == nil {
			t.Errorf("sysctlPath(%s) = %q, want an error", key, got)
		}
	}
	if _, err := sysctlPath(root, "PV_SYSCTL_NOPE"); !errors.Is(err, errNoSysctl) {
		t.Errorf("err %v", err)
	}
}

// PV_SYSCTL_* entries of the boot configuration are written; one that
// names nothing is logged and the others still apply.
func TestApplySysctls(t *testing.T) {
	root := sysTree(t, "kernel/core_pattern", "net/ipv4/ip_forward")
	var buf bytes.Buffer
	applySysctls(root, []config.Pair{
		{Key: "PV_SYSCTL_KERNEL_CORE_PATTERN", Value: "|/lib/pv/pvcrash --skip"},
		{Key: "PV_SYSCTL_KERNEL_NOPE", Value: "1"},
		{Key: "sysctl.net.ipv4.ip_forward", Value: "1"},
	}, slog.New(slog.NewTextHandler(&buf, nil)))
	for f, want := range map[string]string{"kernel/core_pattern": "|/lib/pv/pvcrash --skip", "net/ipv4/ip_forward": "1"} {
		if b, _ := os.ReadFile(filepath.Join(root, f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	if !strings.Contains(buf.String(), "PV_SYSCTL_KERNEL_NOPE") {
		t.Errorf("the failure is not logged:\n%s", buf.String())
	}
}
