package rootfs

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// loopAttempts bounds the retries when another process grabs the free loop
// device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE.
const loopAttempts = 32

// attachLoop binds image read-only to a free loop device with autoclear set
// and returns the device path and an open handle on it. The caller must
// keep the handle open until the device is mounted, then close it: with
// LO_FLAGS_AUTOCLEAR the kernel detaches the device at its last close, so
// closing it without mounting detaches it at once.
func attachLoop(image string) (string, *os.File, error) {
	backing, err := os.OpenFile(image, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open loop backing file: %w", err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open loop control: %w", err)
	}
	defer ctl.Close()

	var lastErr error
	for range loopAttempts {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("get free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		f, err := openLoopDev(dev)
		if err != nil {
			lastErr = err
			continue
		}
		err = configureLoop(f, backing, image)
		if err == nil {
			return dev, f, nil
		}
		f.Close()
		if !errors.Is(err, unix.EBUSY) {
			return "", nil, fmt.Errorf("configure %s for %s: %w", dev, image, err)
		}
		lastErr = err // somebody else took it: ask for another one
	}
	return "", nil, fmt.Errorf("attach loop device for %s: %w", image, lastErr)
}

// openLoopDev opens a loop device node, waiting briefly for devtmpfs to
// create a node that LOOP_CTL_GET_FREE has just added.
func openLoopDev(dev string) (*os.File, error) {
	var err error
	for range 50 {
		var f *os.File
		f, err = os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil, fmt.Errorf("open loop device: %w", err)
}

// configureLoop attaches backing to the loop device f, read-only and
// auto-clearing. It uses LOOP_CONFIGURE (Linux 5.8+) and falls back to
// LOOP_SET_FD + LOOP_SET_STATUS64 on older kernels.
func configureLoop(f, backing *os.File, name string) error {
	var info unix.LoopInfo64
	info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	copy(info.File_name[:len(info.File_name)-1], name)
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Info: info}
	err := unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
	if err == nil || !(errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY)) {
		return err
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(int(f.Fd()), &info); err != nil {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}
