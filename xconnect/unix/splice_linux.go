package unix

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
)

// A splicer moves bulk bytes from one unix connection to another through
// a pipe, so that the proxy copies nothing: the pages a sender queued are
// handed on by reference (splice(2) both ways). On a small device a link's
// throughput is its CPU per byte: a copy relay gave half of a direct
// connection's, the splice relay about two thirds (make bench).
//
// Splicing a unix socket drops the descriptors (SCM_RIGHTS) of what it
// reads, so bytes are spliced only when they are known to carry none: the
// kernel counts the descriptors waiting in a socket's receive queue
// (scm_fds in /proc/self/fdinfo, Linux 5.7+). The reader is the only one
// that takes from the queue, so if SIOCINQ says q bytes are queued and the
// count read after that is 0, none of those q bytes carries a descriptor,
// whatever arrives meanwhile. When the count is not 0, or cannot be read,
// the caller's recvmsg path takes the bytes with their descriptors.
type splicer struct {
	src, dst *net.UnixConn
	info     int    // /proc/self/fdinfo/<src fd>, read again at 0 (-1: not open)
	pr, pw   int    // the pipe
	cap      int    // its capacity
	buf      []byte // for info
	dead     bool   // splicing is not possible
}

// spliceDescriptors are what a splicer holds, counted in xconnect's
// process-wide budget: the pipe's two ends and src's fdinfo.
const spliceDescriptors = 3

// pipeSize is asked for the pipe: fewer, larger splices. The kernel may
// give less (pipe-max-size); F_GETPIPE_SZ tells.
const pipeSize = 1 << 20

func newSplicer(dst, src *net.UnixConn) *splicer {
	return &splicer{src: src, dst: dst, info: -1, pr: -1, pw: -1}
}

// open makes the pipe and opens the fdinfo of src, on first use: a link
// that carries only small messages never needs them. It reports whether
// splicing is possible.
func (s *splicer) open() bool {
	if s.dead {
		return false
	}
	if s.pr >= 0 {
		return true
	}
	// Refused, the bytes are copied; a later bulk read asks again.
	if !xconnect.TakeDescriptors(spliceDescriptors) {
		return false
	}
	s.dead = true // unless all of the below works
	fail := func() bool {
		s.closeInfo()
		xconnect.GiveDescriptors(spliceDescriptors)
		return false
	}
	rc, err := s.src.SyscallConn()
	if err != nil {
		return fail()
	}
	var fd int
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil {
		return fail()
	}
	// The number stays this socket's while the connection is open: Go
	// closes the descriptor only when no call holds it, and every read of
	// info is made inside a call on src (see move).
	info, err := unix.Open("/proc/self/fdinfo/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail()
	}
	s.info, s.buf = info, make([]byte, 512)
	if _, ok := s.queuedFds(); !ok {
		return fail()
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fail()
	}
	s.pr, s.pw = p[0], p[1]
	unix.FcntlInt(uintptr(s.pw), unix.F_SETPIPE_SZ, pipeSize)
	s.cap = pipeSize
	if n, err := unix.FcntlInt(uintptr(s.pw), unix.F_GETPIPE_SZ, 0); err == nil {
		s.cap = n
	}
	s.dead = false
	return true
}

func (s *splicer) closeInfo() {
	if s.info >= 0 {
		unix.Close(s.info)
		s.info = -1
	}
}

func (s *splicer) close() {
	s.closeInfo()
	if s.pr >= 0 {
		unix.Close(s.pr)
		unix.Close(s.pw)
		s.pr, s.pw = -1, -1
		xconnect.GiveDescriptors(spliceDescriptors)
	}
	s.dead = true
}

// spliced counts the bytes moved by splice, for the tests that check
// that bulk takes this path.
var spliced atomic.Int64

var scmFds = []byte("\nscm_fds:")

// queuedFds is the number of descriptors in src's receive queue. It
// reads the fdinfo with one pread: the file is a few lines, which the
// kernel renders whole on each read from 0 (a loop until the end, as
// os.File.ReadAt makes, costs a second system call per splice).
func (s *splicer) queuedFds() (int, bool) {
	n, err := unix.Pread(s.info, s.buf, 0)
	if n <= 0 || err != nil {
		return 0, false
	}
	b := s.buf[:n]
	i := bytes.Index(b, scmFds)
	if i < 0 {
		return 0, false
	}
	b = bytes.TrimLeft(b[i+len(scmFds):], " \t")
	if j := bytes.IndexByte(b, '\n'); j >= 0 {
		b = b[:j]
	}
	v, err := strconv.Atoi(string(b))
	return v, err == nil
}

// move splices what src has queued, as long as it carries no
// descriptors, to dst, and returns when the queue is empty, holds
// descriptors, or is at its end: the recvmsg path goes on from there. The
// pipe is empty when it returns, so nothing overtakes what is in it. Bytes
// moved are added to n.
func (s *splicer) move(n *atomic.Int64) error {
	src, err := s.src.SyscallConn()
	if err != nil {
		return err
	}
	dst, err := s.dst.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var got int
		var serr error
		err := src.Read(func(fd uintptr) bool {
			q, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			if err != nil {
				return true
			}
			if q == 0 {
				// Nothing queued: wait for more, unless this is
				// the end of the stream (or an error), which the
				// recvmsg path passes on.
				var one [1]byte
				k, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				return !errors.Is(err, unix.EAGAIN) || k > 0
			}
			if k, ok := s.queuedFds(); !ok || k != 0 {
				return true
			}
			var k64 int64
			k64, serr = unix.Splice(int(fd), nil, s.pw, nil, min(q, s.cap), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			got = int(k64)
			if errors.Is(serr, unix.EAGAIN) {
				got, serr = 0, nil
			}
			return true
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
		if got <= 0 {
			return nil
		}
		for left := got; left > 0; {
			var put int
			var perr error
			err := dst.Write(func(fd uintptr) bool {
				var k64 int64
				k64, perr = unix.Splice(s.pr, nil, int(fd), nil, left, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				put = int(k64)
				return !errors.Is(perr, unix.EAGAIN)
			})
			if err == nil {
				err = perr
			}
			if err != nil {
				// What is still in the pipe is lost with the
				// connection: the caller closes both ends.
				return err
			}
			if put <= 0 {
				return fmt.Errorf("splice to the other end moved nothing")
			}
			left -= put
			n.Add(int64(put))
			spliced.Add(int64(put))
		}
		if got < bulkMin {
			// Small messages again, after a wait: the recvmsg
			// path serves them in fewer calls.
			return nil
		}
	}
}

// bulkMin is the least a splice must move to stay on this path.
const bulkMin = 4 << 10
