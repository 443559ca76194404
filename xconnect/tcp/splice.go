package tcp

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
)

// The splice loop of a direction between two TCP sockets. A direction
// holds a pipe only while bytes flow: it takes one when its source has
// bytes, moves them source → pipe → destination as long as the source
// has more, and gives the pipe back as soon as the source has nothing
// queued, before it waits for the source again. So an idle connection
// costs its two sockets.
//
// Bulk throughput is decided less by the relay's own system calls than
// by how long a byte stays in flight between the two hops: moved in small
// bites (spliceChunk) and with the destination's unsent queue kept short
// (notSentLowat), a byte reaches the consumer while the page holding it
// is still in the processor's cache, and the consumer's copy of it is
// about twice as cheap as after a trip through megabytes of queues (in
// the bulk figure, about 1.3× a relay that moves a pipe's size at a time
// into an unbounded send queue, as io.Copy does).

// pipeSize is what a pipe is grown to (the default limit of
// /proc/sys/fs/pipe-max-size; a smaller limit leaves it smaller): the
// pipe's slots hold references to the socket's pages, one per fragment,
// so a chunk of small fragments still fits.
const pipeSize = 1 << 20

// spliceChunk is the most moved from the source per splice.
const spliceChunk = 64 << 10

// notSentLowat is the destination's TCP_NOTSENT_LOWAT: it takes more
// only once fewer bytes than this wait unsent in it.
const notSentLowat = 32 << 10

// maxFreePipes bounds the pipes kept for reuse; one given back past it is
// closed.
const maxFreePipes = 4

type pipe struct {
	r, w int
	// held: bytes in the pipe, not yet moved on.
	held int
}

var pipes struct {
	sync.Mutex
	free []*pipe
}

// errNoPipe: xconnect's process-wide descriptor budget has no room for
// one more pipe (the free ones count too, as they are open).
var errNoPipe = errors.New("no descriptors left in the budget for a pipe")

// getPipe takes a free pipe or makes one.
func getPipe() (*pipe, error) {
	pipes.Lock()
	if n := len(pipes.free); n > 0 {
		p := pipes.free[n-1]
		pipes.free[n-1] = nil
		pipes.free = pipes.free[:n-1]
		pipes.Unlock()
		return p, nil
	}
	pipes.Unlock()
	if !xconnect.TakeDescriptors(2) {
		return nil, errNoPipe
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		xconnect.GiveDescriptors(2)
		return nil, err
	}
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize) // best effort
	return &pipe{r: fds[0], w: fds[1]}, nil
}

// putPipe gives p back: kept for reuse when it is empty and the free list
// has room, closed otherwise.
func putPipe(p *pipe) {
	if p.held == 0 {
		pipes.Lock()
		if len(pipes.free) < maxFreePipes {
			pipes.free = append(pipes.free, p)
			pipes.Unlock()
			return
		}
		pipes.Unlock()
	}
	unix.Close(p.r)
	unix.Close(p.w)
	xconnect.GiveDescriptors(2)
}

// errStalled: a splice out of a pipe holding bytes moved none.
var errStalled = errors.New("splice moved no byte out of a full pipe")

// splicePump copies src to dst until src's end of stream (nil), an error
// of either, or either closed, and returns the bytes written to dst.
func splicePump(dst, src syscall.RawConn) (int64, error) {
	var total int64
	var p *pipe
	// Best effort: without it the relay is only slower.
	dst.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notSentLowat)
	})
	defer func() {
		if p != nil {
			putPipe(p)
		}
	}()
	var mark *urgentStep // made at the first urgent data only: it holds a buffer
	// The fill's results, declared once: the callback shares them, and
	// per turn each would be an allocation.
	var eof, atMark bool
	var serr error
	var calls int
	for {
		// Fill: wait for src holding no pipe; with bytes queued, take
		// one and move what is there (up to spliceChunk) into it.
		eof, atMark, serr, calls = false, false, nil, 0
		err := src.Read(func(fd uintptr) bool {
			calls++
			if p == nil {
				if p, serr = getPipe(); serr != nil {
					return true
				}
			}
			for {
				n, err := unix.Splice(int(fd), nil, p.w, nil, spliceChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case err == unix.EINTR:
					continue
				case (err == unix.EAGAIN && calls > 1 || err == nil && n == 0) && urgentMark(int(fd)):
					// Woken, or at an end, with nothing spliced:
					// stopped at urgent data (see urgentStep).
					atMark = true
					if mark == nil {
						mark = new(urgentStep)
					}
					mark.read(int(fd))
				case err == unix.EAGAIN:
					// Nothing queued (the pipe is empty here): give
					// it back, then wait.
					putPipe(p)
					p = nil
					return false
				case err != nil:
					serr = err
				case n == 0:
					eof = true
				default:
					p.held = int(n)
				}
				return true
			}
		})
		switch {
		case err != nil:
			return total, err
		case serr != nil:
			return total, serr
		case eof:
			return total, nil
		case atMark:
			k, err := mark.send(dst)
			total += k
			if err != nil || mark.eof {
				return total, err
			}
			continue
		}
		// Drain: everything in the pipe to dst, waiting for dst to
		// take more when its buffer is full.
		var werr error
		err = dst.Write(func(fd uintptr) bool {
			for p.held > 0 {
				n, err := unix.Splice(p.r, nil, int(fd), nil, p.held, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					return false
				case err != nil:
					werr = err
					return true
				case n == 0:
					werr = errStalled
					return true
				}
				p.held -= int(n)
				total += n
			}
			return true
		})
		if err != nil {
			return total, err
		}
		if werr != nil {
			return total, werr
		}
	}
}

// A splice out of a TCP socket stops at urgent data (a byte sent with
// MSG_OOB: telnet's Synch, ftp's ABOR, some database drivers' break) and
// never moves past it: it fails with EAGAIN, or returns 0 when the peer's
// end is queued too, and only an ordinary read steps over the mark. An
// urgentStep takes the urgent byte out of band and reads on past it, and
// then sends both on as they came: the byte out of band, where the
// receiver finds it at the same place in the stream, then what followed.
type urgentStep struct {
	urgent    [1]byte
	hasUrgent bool
	buf       [4 << 10]byte
	n         int
	eof       bool // the stream ended after what was read
	err       error
}

// urgentMark reports whether fd's next byte is at its urgent mark.
func urgentMark(fd int) bool {
	at, err := unix.IoctlGetInt(fd, unix.SIOCATMARK)
	return err == nil && at != 0
}

// read takes the urgent byte (when it has not been taken yet) and reads
// past the mark, at most a buffer's worth, without waiting. A read at the
// mark also fails (EAGAIN) while a signal is pending for the thread, with
// bytes queued and the mark not passed; as long as the socket is still
// at its mark, it is read again (the signal is handled in between): a
// wait for readability then would never end, since nothing new comes.
func (u *urgentStep) read(fd int) {
	u.hasUrgent, u.n, u.eof, u.err = false, 0, false, nil
	if k, _, err := unix.Recvfrom(fd, u.urgent[:], unix.MSG_OOB|unix.MSG_DONTWAIT); err == nil && k == 1 {
		u.hasUrgent = true
	}
	for try := 0; ; try++ {
		n, err := xconnect.RawRead(fd, u.buf[:])
		switch {
		case err == unix.EAGAIN && try < maxMarkReads && urgentMark(fd):
			continue
		case err == unix.EAGAIN:
		case err != nil:
			u.err = err
		case n == 0:
			u.eof = true
		default:
			u.n = n
		}
		return
	}
}

// maxMarkReads bounds the reads at an urgent mark that a pending signal
// made fail.
const maxMarkReads = 100

// send writes what read took to dst, waiting while dst is full, and
// returns the bytes written in band.
func (u *urgentStep) send(dst syscall.RawConn) (int64, error) {
	out := u.buf[:u.n]
	urgent := u.hasUrgent
	var werr error
	err := dst.Write(func(fd uintptr) bool {
		if urgent {
			switch err := unix.Sendto(int(fd), u.urgent[:], unix.MSG_OOB|unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil); {
			case err == unix.EAGAIN:
				return false
			case err != nil:
				werr = err
				return true
			}
			urgent = false
		}
		for len(out) > 0 {
			n, err := xconnect.RawWrite(int(fd), out)
			switch {
			case err == unix.EAGAIN:
				return false
			case err != nil:
				werr = err
				return true
			}
			out = out[n:]
		}
		return true
	})
	written := int64(u.n - len(out))
	if err == nil {
		err = werr
	}
	if err == nil {
		err = u.err
	}
	return written, err
}

// tcpRaw gives the raw connections of dst and src when both are TCP
// sockets, which the splice loop carries.
func tcpRaw(dst, src net.Conn) (d, s syscall.RawConn, ok bool) {
	dt, ok1 := dst.(*net.TCPConn)
	st, ok2 := src.(*net.TCPConn)
	if !ok1 || !ok2 {
		return nil, nil, false
	}
	var err error
	if d, err = dt.SyscallConn(); err != nil {
		return nil, nil, false
	}
	if s, err = st.SyscallConn(); err != nil {
		return nil, nil, false
	}
	return d, s, true
}
