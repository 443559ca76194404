package watchdog

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WDIOC_SETTIMEOUT from linux/watchdog.h: _IOWR('W', 6, int).
const wdiocSetTimeout = 0xc0045706

// Open opens the watchdog device and sets its timeout in seconds; the
// kernel may round it, so the value it took is returned.
func Open(path string, timeoutSec int) (*os.File, int, error) {
	if timeoutSec <= 0 {
		return nil, 0, fmt.Errorf("PV_WDT_TIMEOUT %d: must be positive seconds", timeoutSec)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("open watchdog: %w", err)
	}
	t := int32(timeoutSec)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), wdiocSetTimeout, uintptr(unsafe.Pointer(&t))); e != 0 {
		f.Close()
		return nil, 0, fmt.Errorf("set watchdog timeout on %s: %w", path, e)
	}
	return f, int(t), nil
}
