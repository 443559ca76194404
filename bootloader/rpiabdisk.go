package bootloader

import (
	"encoding/binary"
	"fmt"
	"os"
)

// DefaultBootModeProperty is where the Raspberry Pi firmware tells the
// running system which medium it loaded the kernel from (BOOT_ORDER's
// numbers: 1 SD card or eMMC, 4 USB mass storage, 5 USB through the
// BCM2711's own controller, 6 NVMe; 2 network, 3 rpiboot, 7 HTTP).
const DefaultBootModeProperty = "/proc/device-tree/chosen/bootloader/boot-mode"

// RPiABBootsel is the partition of the booted disk that holds
// autoboot.txt; partitions 2 and 3 are the A and B boot partitions
// autoboot.txt names, as upstream lays the disk out.
const RPiABBootsel = 1

// RPiABDevices returns the device nodes of partitions 1, 2 and 3 on the disk the
// firmware booted from, as the property at path (DefaultBootModeProperty)
// names its medium: upstream hardcodes mmcblk0 for an SD card and sda for
// USB. Upstream reads the number as bits (&4 USB, else &1 SD), which takes
// NVMe (6) and HTTP (7) for USB and rpiboot (3) for an SD card; here each
// medium is its number, NVMe is nvme0n1, and a medium with no disk of its
// own is refused by name.
func RPiABDevices(path string) (map[int]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the firmware's boot mode: %w", err)
	}
	if len(data) != 4 {
		return nil, fmt.Errorf("boot mode %s: %d bytes, want a 32-bit cell", path, len(data))
	}
	var disk, sep string
	switch mode := binary.BigEndian.Uint32(data); mode {
	case 1:
		disk, sep = "/dev/mmcblk0", "p"
	case 4, 5:
		disk = "/dev/sda"
	case 6:
		disk, sep = "/dev/nvme0n1", "p"
	default:
		return nil, fmt.Errorf("boot mode %d (%s): not a disk rpiab can switch partitions of (SD card 1, USB 4 or 5, NVMe 6)", mode, path)
	}
	devs := make(map[int]string, 3)
	for _, n := range []int{RPiABBootsel, 2, 3} {
		devs[n] = fmt.Sprintf("%s%s%d", disk, sep, n)
	}
	return devs, nil
}
