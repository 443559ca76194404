package bootloader

import (
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The partitions are those of the disk the firmware booted, as its
// boot-mode property names the medium.
func TestRPiABDevices(t *testing.T) {
	tests := []struct {
		mode   uint32
		want   map[int]string
		errHas string
	}{
		{1, map[int]string{1: "/dev/mmcblk0p1", 2: "/dev/mmcblk0p2", 3: "/dev/mmcblk0p3"}, ""},
		{4, map[int]string{1: "/dev/sda1", 2: "/dev/sda2", 3: "/dev/sda3"}, ""},
		{5, map[int]string{1: "/dev/sda1", 2: "/dev/sda2", 3: "/dev/sda3"}, ""},
		{6, map[int]string{1: "/dev/nvme0n1p1", 2: "/dev/nvme0n1p2", 3: "/dev/nvme0n1p3"}, ""},
		{2, nil, "boot mode 2 ("},
		{3, nil, "boot mode 3 ("},
		{7, nil, "boot mode 7 ("},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "boot-mode")
		cell := binary.BigEndian.AppendUint32(nil, tt.mode)
		if err := os.WriteFile(path, cell, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := RPiABDevices(path)
		if tt.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("mode %d: %v, %v; want an error with %q", tt.mode, got, err, tt.errHas)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("mode %d: %v, %v; want %v", tt.mode, got, err, tt.want)
		}
	}
	path := filepath.Join(t.TempDir(), "boot-mode")
	if _, err := RPiABDevices(path); err == nil || !strings.Contains(err.Error(), "read the firmware's boot mode") {
		t.Errorf("no property: %v", err)
	}
	if err := os.WriteFile(path, []byte{1}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := RPiABDevices(path); err == nil || !strings.Contains(err.Error(), "1 bytes, want a 32-bit cell") {
		t.Errorf("short property: %v", err)
	}
}
