// Package stuckdev makes, for the integration tests, a block device whose
// reads do not return until the test says so: what a suspended
// device-mapper volume, a dead USB stick or an NBD without its server does
// to whoever reads it. It is a loop device over a file served by a FUSE
// server, which holds every read back while the device is suspended.
// Killing the server (Fail) makes it a device whose reads fail with EIO,
// as a dying disk's do. A writable one (NewWritable) holds its writes too
// while suspended (Suspend): a sync of a file system on it waits in the
// kernel, unkillable, as on a disk that stopped answering.
//
// Device-mapper would be the obvious reproduction (dmsetup suspend), but
// kernels without it are common in CI VMs, and a suspended dm volume left
// behind by a crashed test hangs every later reader on the host. When the
// FUSE server dies the kernel fails the reads it held (EIO), so nothing
// stays stuck after a crash. For that the server is a child process,
// killed when its parent dies (Pdeathsig): a server in the test process
// would deadlock it, since a thread stuck on the device keeps the process
// from finishing its exit, so the server's file would never be closed.
package stuckdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/isolated"
)

// envServe, in a child's environment, names the image it serves: the
// test binary, run again with it, is the server (see init). envWritable
// set to 1 serves it writable, and not suspended.
const (
	envServe    = "PV_STUCKDEV_SERVE"
	envWritable = "PV_STUCKDEV_WRITABLE"
)

// The server's files, as the child sees them (ExtraFiles).
const (
	childFuseFd    = 3
	childControlFd = 4
)

func init() {
	if image := os.Getenv(envServe); image != "" {
		os.Exit(serveChild(image, os.Getenv(envWritable) == "1"))
	}
}

// Device is a loop device whose reads block while it is suspended.
type Device struct {
	Node string // /dev/loopN

	tb       testing.TB
	file     string        // the FUSE mount, the loop device's backing file
	server   *exec.Cmd     // the FUSE server
	control  *os.File      // commands to the server: "resume", "held"
	gone     chan struct{} // closed when the server has exited
	waitErr  error         // how it exited, once gone is closed
	release  chan struct{} // lets the server's parent thread go
	writable bool
}

// New serves image read-only on a free loop device, suspended: a read
// of it does not return until Resume. When tb ends the device is resumed
// and detached and its server stopped, whether tb passed or not. Skips tb
// outside fresh namespaces or without /dev/fuse or losetup.
func New(tb testing.TB, image string) *Device {
	tb.Helper()
	return newDevice(tb, image, nil, false)
}

// NewWritable serves image writable on a free loop device, running: its
// reads and writes are answered until Suspend, and held from then on
// until Resume. What is written is kept in the server's memory, not in
// image. A file system made in image beforehand (mkfs) can be mounted
// from it, written, and then made to hang its sync. When tb ends it is
// resumed and detached as New's.
func NewWritable(tb testing.TB, image string) *Device {
	tb.Helper()
	return newDevice(tb, image, nil, true)
}

// Partition is a partition of NewPartitioned's device, in bytes.
type Partition struct {
	Start, Length int64
}

// NewPartitioned is New with partitions added to the device, numbered
// from 1 in order (/dev/loopNp1, …): a disk whose partitions the kernel
// knows and whose partition table cannot be read. They are added as
// partx adds them (BLKPG), but from parts, since the table cannot be
// read, and removed when tb ends, before the device is detached.
func NewPartitioned(tb testing.TB, image string, parts []Partition) *Device {
	tb.Helper()
	return newDevice(tb, image, parts, false)
}

func newDevice(tb testing.TB, image string, parts []Partition, writable bool) *Device {
	tb.Helper()
	isolated.Require(tb)
	losetup := tool(tb, "losetup", "util-linux")
	d := &Device{tb: tb, writable: writable}
	d.mount(image)
	// Registered before the loop device, so run after its detaching: the
	// loop device's last close flushes the file, which needs the server.
	tb.Cleanup(d.stop)

	args := []string{"--find", "--show", "--read-only", d.file}
	if writable {
		args = []string{"--find", "--show", d.file}
	}
	if parts != nil {
		// Partitions may be added to it only with partscan; a kernel
		// without partition parsers reads nothing for it.
		args = append(args, "--partscan")
	}
	out, err := exec.Command(losetup, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("losetup %s: %v: %s", d.file, err, out)
	}
	d.Node = strings.TrimSpace(string(out))
	tb.Cleanup(func() {
		// A reader stuck on the device would keep it attached. A server
		// that dies (TestDeviceServerDeath kills it) may not be seen
		// gone yet: its control pipe then fails, and gone closes soon.
		if d.alive() {
			if _, err := d.ask("resume"); err != nil {
				select {
				case <-d.gone:
				case <-time.After(5 * time.Second):
					tb.Errorf("stuckdev: resume %s: %v", d.Node, err)
				}
			}
		}
		if out, err := exec.Command(losetup, "--detach", d.Node).CombinedOutput(); err != nil {
			tb.Errorf("losetup --detach %s: %v: %s", d.Node, err, out)
		}
	})
	for i, p := range parts {
		if err := d.partition(unix.BLKPG_ADD_PARTITION, i+1, p); err != nil {
			tb.Fatalf("stuckdev: add partition %d to %s: %v", i+1, d.Node, err)
		}
		tb.Cleanup(func() {
			if err := d.partition(unix.BLKPG_DEL_PARTITION, i+1, p); err != nil {
				tb.Errorf("stuckdev: delete partition %d of %s: %v", i+1, d.Node, err)
			}
		})
	}
	return d
}

// partition adds or deletes (op) partition pno of the device, by the
// BLKPG ioctl, which does not read the device.
func (d *Device) partition(op int32, pno int, p Partition) error {
	// O_NONBLOCK: opening a device whose reads are held must not wait.
	fd, err := unix.Open(d.Node, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	bp := unix.BlkpgPartition{Start: p.Start, Length: p.Length, Pno: int32(pno)}
	arg := unix.BlkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(bp)), Data: (*byte)(unsafe.Pointer(&bp))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return errno
	}
	return nil
}

// Suspend holds every later read and write of the device until Resume.
func (d *Device) Suspend() {
	if _, err := d.ask("suspend"); err != nil {
		d.tb.Errorf("stuckdev: suspend %s: %v", d.Node, err)
	}
}

// Resume answers the reads held so far and every later one.
func (d *Device) Resume() {
	if _, err := d.ask("resume"); err != nil {
		d.tb.Errorf("stuckdev: resume %s: %v", d.Node, err)
	}
}

// Fail makes every read of the device fail from now on with EIO, as a
// dying disk's do: its server is killed, and the kernel fails the reads
// of a file whose server is gone.
func (d *Device) Fail() {
	d.tb.Helper()
	if err := d.server.Process.Kill(); err != nil {
		d.tb.Fatalf("stuckdev: kill the server of %s: %v", d.Node, err)
	}
	select {
	case <-d.gone:
	case <-time.After(10 * time.Second):
		d.tb.Fatalf("stuckdev: server of %s still running 10s after it was killed", d.Node)
	}
}

// alive reports whether the server runs: once it is gone, the kernel
// has failed the reads it held, and there is nothing to resume.
func (d *Device) alive() bool {
	select {
	case <-d.gone:
		return false
	default:
		return true
	}
}

// Held is how many reads and writes of the device wait for Resume: more
// than 0 shows that a reader or writer really is stuck on it.
func (d *Device) Held() int {
	answer, err := d.ask("held")
	n, convErr := strconv.Atoi(answer)
	if err != nil || convErr != nil {
		d.tb.Errorf("stuckdev: held reads of %s: %q, %v", d.Node, answer, errors.Join(err, convErr))
	}
	return n
}

// ask sends the server a command and returns its answer.
func (d *Device) ask(cmd string) (string, error) {
	select {
	case <-d.gone:
		return "", fmt.Errorf("server exited: %v", d.waitErr)
	default:
	}
	if err := d.control.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	if _, err := d.control.Write([]byte(cmd)); err != nil {
		return "", err
	}
	b := make([]byte, 64)
	n, err := d.control.Read(b)
	return string(b[:n]), err
}

// mount mounts a FUSE file system whose root is a regular file, image's
// content, on a file in tb's temporary directory, in this mount
// namespace (private: the test runs in a fresh one), and starts its
// server, suspended.
func (d *Device) mount(image string) {
	tb := d.tb
	fuse, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		tb.Skipf("stuckdev: %v (a kernel with FUSE is needed)", err)
	}
	// Only the server may hold the connection: its death must end it.
	defer fuse.Close()
	d.file = filepath.Join(tb.TempDir(), "stuck.img")
	if err := os.WriteFile(d.file, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	// rootmode 0100000: the root is a regular file, mounted on one.
	opts := fmt.Sprintf("fd=%d,rootmode=100000,user_id=0,group_id=0,allow_other", fuse.Fd())
	if err := unix.Mount("stuckdev", d.file, "fuse.stuckdev", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		tb.Skipf("stuckdev: mount fuse on %s: %v", d.file, err)
	}
	if err := d.start(image, fuse); err != nil {
		_ = unix.Unmount(d.file, unix.MNT_DETACH)
		tb.Fatalf("stuckdev: start server: %v", err)
	}
	// Loads the file's size: the loop device takes it from the inode.
	if _, err := os.Stat(d.file); err != nil {
		d.stop()
		tb.Fatalf("stuckdev: stat %s: %v", d.file, err)
	}
}

// start runs the server, the test binary again, on a thread of its own
// that lives until stop: Pdeathsig kills the child when the thread that
// started it ends, which the Go runtime may otherwise do at any time.
func (d *Device) start(image string, fuse *os.File) error {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	// Non-blocking, for os.File's deadlines; the server's end blocks.
	if err := unix.SetNonblock(pair[0], true); err != nil {
		unix.Close(pair[0])
		unix.Close(pair[1])
		return err
	}
	d.control = os.NewFile(uintptr(pair[0]), "stuckdev control")
	theirs := os.NewFile(uintptr(pair[1]), "stuckdev control (server)")
	defer theirs.Close()
	d.server = exec.Command("/proc/self/exe")
	d.server.Env = append(os.Environ(), envServe+"="+image)
	if d.writable {
		d.server.Env = append(d.server.Env, envWritable+"=1")
	}
	d.server.ExtraFiles = []*os.File{fuse, theirs} // childFuseFd, childControlFd
	d.server.Stderr = os.Stderr
	d.server.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d.gone, d.release = make(chan struct{}), make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := d.server.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.waitErr = d.server.Wait()
		close(d.gone)
		<-d.release
	}()
	if err := <-started; err != nil {
		d.control.Close()
		return err
	}
	return nil
}

// stop unmounts the file and waits for the server to see its connection
// end, which it does once the loop device has let go of the file.
func (d *Device) stop() {
	tb := d.tb
	if d.alive() {
		d.Resume()
	}
	if err := unix.Unmount(d.file, unix.MNT_DETACH); err != nil {
		tb.Errorf("stuckdev: unmount %s: %v", d.file, err)
	}
	select {
	case <-d.gone:
	case <-time.After(10 * time.Second):
		tb.Errorf("stuckdev: server of %s still running 10s after unmounting: killed", d.file)
		_ = d.server.Process.Kill()
		<-d.gone
	}
	close(d.release)
	d.control.Close()
}

// serveChild is the server's process: it answers the kernel on
// childFuseFd and the test on childControlFd until the file is
// unmounted, or the test is gone.
func serveChild(image string, writable bool) int {
	data, err := os.ReadFile(image)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stuckdev:", err)
		return 1
	}
	s := &server{fd: childFuseFd, data: data, writable: writable, suspended: !writable, done: make(chan struct{})}
	go s.serve()
	go func() {
		s.control(childControlFd)
		os.Exit(0) // the test is gone: so is the connection, with this process
	}()
	<-s.done
	return 0
}

// server answers the kernel's FUSE requests for one file, holding its
// reads (and writes, and fsyncs) back while suspended.
type server struct {
	fd       int
	data     []byte
	writable bool
	done     chan struct{} // closed when serve returns

	mu        sync.Mutex
	suspended bool
	held      []request
}

type request struct {
	op     uint32
	unique uint64
	off    uint64
	size   uint32
	data   []byte // a write's
}

// FUSE protocol (include/uapi/linux/fuse.h), version 7.31: the opcodes
// answered and the sizes of the structures read and written.
const (
	opForget      = 2
	opGetattr     = 3
	opOpen        = 14
	opRead        = 15
	opWrite       = 16
	opFsync       = 20
	opRelease     = 18
	opFlush       = 25
	opInit        = 26
	opInterrupt   = 36
	opBatchForget = 42

	inHeaderSize  = 40
	outHeaderSize = 16
	attrSize      = 88
	initOutSize   = 64
	openOutSize   = 16
	writeInSize   = 40
	writeOutSize  = 8
	attrValidSecs = 3600
)

func (s *server) serve() {
	defer close(s.done)
	buf := make([]byte, 1<<20+4096) // above the kernel's minimum for any max_write
	for {
		n, err := unix.Read(s.fd, buf)
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ENOENT): // ENOENT: a request withdrawn
			continue
		case err != nil: // ENODEV: unmounted, the connection is gone
			return
		case n < inHeaderSize:
			continue
		}
		s.handle(buf[:n])
	}
}

func (s *server) handle(req []byte) {
	le := binary.LittleEndian
	op, unique := le.Uint32(req[4:]), le.Uint64(req[8:])
	body := req[inHeaderSize:]
	switch op {
	case opInit:
		out := make([]byte, initOutSize)
		le.PutUint32(out[0:], 7)                   // major
		le.PutUint32(out[4:], 31)                  // minor
		le.PutUint32(out[8:], le.Uint32(body[8:])) // max_readahead: the kernel's
		le.PutUint32(out[20:], 4096)               // max_write
		le.PutUint32(out[24:], 1)                  // time_gran
		s.reply(unique, 0, out)
	case opGetattr:
		out := make([]byte, 16+attrSize)
		le.PutUint64(out[0:], attrValidSecs)
		s.putAttr(out[16:])
		s.reply(unique, 0, out)
	case opOpen:
		out := make([]byte, openOutSize)
		le.PutUint64(out[0:], 1) // fh
		s.reply(unique, 0, out)
	case opRead, opWrite, opFsync:
		r := request{op: op, unique: unique}
		switch op {
		case opRead:
			r.off, r.size = le.Uint64(body[8:]), le.Uint32(body[16:])
		case opFsync:
			if !s.writable {
				// As before writes were served: the kernel takes
				// ENOSYS for an fsync with nothing to do (the loop
				// device's set-up asks for one).
				s.reply(unique, -int32(unix.ENOSYS), nil)
				return
			}
		case opWrite:
			if !s.writable || len(body) < writeInSize {
				s.reply(unique, -int32(unix.EROFS), nil)
				return
			}
			r.off, r.size = le.Uint64(body[8:]), le.Uint32(body[16:])
			r.data = append([]byte(nil), body[writeInSize:]...)
		}
		s.mu.Lock()
		if s.suspended {
			s.held = append(s.held, r)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.answer(r)
	case opRelease, opFlush:
		s.reply(unique, 0, nil)
	case opForget, opBatchForget, opInterrupt: // no reply expected
	default:
		s.reply(unique, -int32(unix.ENOSYS), nil)
	}
}

// putAttr writes the root file's fuse_attr.
func (s *server) putAttr(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], 1)                            // ino
	le.PutUint64(b[8:], uint64(len(s.data)))          // size
	le.PutUint64(b[16:], uint64(len(s.data)+511)/512) // blocks
	mode := uint32(0o400)
	if s.writable {
		mode = 0o600
	}
	le.PutUint32(b[60:], unix.S_IFREG|mode) // mode
	le.PutUint32(b[64:], 1)                 // nlink
	le.PutUint32(b[80:], 4096)              // blksize
}

// answer replies to a read with the data asked for, short at the end;
// to a write by storing what fits in the file (its size is fixed: the
// loop device's); to an fsync at once, the data being in memory.
func (s *server) answer(r request) {
	switch r.op {
	case opWrite:
		n := 0
		s.mu.Lock() // resume answers from the control goroutine
		if r.off < uint64(len(s.data)) {
			n = copy(s.data[r.off:], r.data[:min(uint64(len(r.data)), uint64(r.size))])
		}
		s.mu.Unlock()
		if n == 0 && r.size > 0 {
			s.reply(r.unique, -int32(unix.ENOSPC), nil)
			return
		}
		out := make([]byte, writeOutSize)
		binary.LittleEndian.PutUint32(out[0:], uint32(n))
		s.reply(r.unique, 0, out)
		return
	case opFsync:
		s.reply(r.unique, 0, nil)
		return
	}
	s.mu.Lock()
	end := min(r.off+uint64(r.size), uint64(len(s.data)))
	var data []byte
	if r.off < end {
		data = append(data, s.data[r.off:end]...)
	}
	s.mu.Unlock()
	s.reply(r.unique, 0, data)
}

func (s *server) reply(unique uint64, errno int32, body []byte) {
	out := make([]byte, outHeaderSize+len(body))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(errno))
	binary.LittleEndian.PutUint64(out[8:], unique)
	copy(out[outHeaderSize:], body)
	// An error is a request the kernel withdrew (ENOENT) or a connection
	// gone: no one is left to answer.
	_, _ = unix.Write(s.fd, out)
}

func (s *server) resume() {
	s.mu.Lock()
	held := s.held
	s.held, s.suspended = nil, false
	s.mu.Unlock()
	for _, r := range held {
		s.answer(r)
	}
}

// control answers the test's commands on fd until it closes it.
func (s *server) control(fd int) {
	b := make([]byte, 64)
	for {
		n, err := unix.Read(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		answer := "ok"
		switch string(b[:n]) {
		case "resume":
			s.resume()
		case "suspend":
			s.mu.Lock()
			s.suspended = true
			s.mu.Unlock()
		case "held":
			s.mu.Lock()
			answer = strconv.Itoa(len(s.held))
			s.mu.Unlock()
		default:
			answer = "unknown command"
		}
		if _, err := unix.Write(fd, []byte(answer)); err != nil {
			return
		}
	}
}

// MountedExt4 makes a 32 MiB ext4 file system on a writable device
// (NewWritable), running, and mounts it on a temporary directory, in
// this mount namespace; unmounted (lazily, should something still hold
// it) when tb ends, before the device goes. Skips tb without mkfs.ext4.
func MountedExt4(tb testing.TB) (*Device, string) {
	tb.Helper()
	isolated.Require(tb)
	mkfs := tool(tb, "mkfs.ext4", "e2fsprogs")
	image := filepath.Join(tb.TempDir(), "ext4.img")
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(image, 32<<20); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", image).CombinedOutput(); err != nil {
		tb.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	d := NewWritable(tb, image)
	mnt := tb.TempDir()
	if err := unix.Mount(d.Node, mnt, "ext4", 0, ""); err != nil {
		tb.Fatalf("stuckdev: mount %s: %v", d.Node, err)
	}
	tb.Cleanup(func() {
		// The device is resumed by now (cleanups run last first): an
		// unmount writes back what is left.
		if err := unix.Unmount(mnt, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return d, mnt
}

// tool is the path of the program name, from PATH or /usr/sbin (which a
// test's PATH may lack); it skips tb without it, naming its package.
func tool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if path, err = exec.LookPath("/usr/sbin/" + name); err != nil {
			tb.Skipf("stuckdev: no %s (%s)", name, pkg)
		}
	}
	return path
}

// Overwrite writes size bytes at the start of the file at path, made if
// missing, and fsyncs them when sync is set. Written once with sync and
// again without once the device is suspended, they are dirty pages whose
// writing reads nothing from the device (its reads are held too): what
// the tests of a sync stuck on a dying disk give that sync to write.
func Overwrite(path string, size int, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(bytes.Repeat([]byte("w"), size)); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
