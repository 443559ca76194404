package unix

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect/hangup"
)

// Pump copies src to dst with the descriptors that come with the bytes,
// until src's end of stream, which it passes on as a half-close of dst. It
// returns nil at a clean end; an error ends both directions (the caller
// closes both connections).
func Pump(dst, src *net.UnixConn, n *atomic.Int64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	p := &pump{dst: dst, src: src, n: n, buf: make([]byte, bufSize), oob: make([]byte, oobSize),
		sp: newSplicer(dst, src)}
	defer p.sp.close()
	p.watch()
	defer p.slow()
	for {
		if p.rc != nil {
			if done, err := p.fast(); done {
				return err
			}
			continue
		}
		k, oobn, flags, _, rerr := src.ReadMsgUnix(p.buf, p.oob)
		if done, err := p.forward(k, oobn, flags, rerr); done {
			return err
		}
		if rerr == nil && k == len(p.buf) && oobn == 0 && p.sp.open() {
			// A full buffer: more is likely queued. Bulk moves
			// without a copy while it carries no descriptors.
			if err := p.sp.move(n); err != nil {
				return quiet(err)
			}
		}
	}
}

// A pump is one direction of a consumer connection.
//
// A message relayed is most often answered by one the other way before
// the next comes: after it, Go's poller would read src again before it
// waits, a read that only fails (EAGAIN), one system call of three per
// message a link makes. Within one RawConn.Read, whose callback returns
// false to wait, readiness is not forgotten: so the pump's reads run
// inside it, and a read shorter than the buffer, after which the socket
// had no more, is followed by a wait, as the http proxy's fast turns and
// nginx do. An end of stream that came with the last bytes read would
// never wake that wait; the hang-up watcher does (package hangup), and
// from then on the pump reads before every wait (the slow path), which
// no longer blocks.
//
// A read shorter than the buffer leaves more queued in two cases, both
// foreign to a link: a reader with SO_PASSCRED, which no socket of a link
// has, stops where the sender's credentials change, and a read stops at a
// byte sent with MSG_OOB, which a link does not carry. A read that took
// descriptors may stop before more bytes too: after one, the pump reads
// again rather than wait.
type pump struct {
	dst, src *net.UnixConn
	n        *atomic.Int64
	buf, oob []byte
	sp       *splicer
	rc       syscall.RawConn // src's; nil: the slow path
	wt       *hangup.Watch
	call     func(uintptr) bool
	left     leave // why the callback returned
	err      error // the pump's result, when left is leaveDone
}

// Why the fast path's callback returned.
type leave int

const (
	leaveHup  leave = iota // the peer has hung up: the slow path from now on
	leaveBulk              // a full buffer: splice what is queued
	leaveDone              // the stream is over (err says how)
)

// waitsWithoutRead counts the waits the fast path made without a read
// that failed first, for the tests that check it is taken.
var waitsWithoutRead atomic.Int64

// testHookWaiting, when set by a test, runs when the fast path is about
// to wait without reading first.
var testHookWaiting func(*pump)

// aLongTimeAgo is the past deadline that wakes a waiting reader.
var aLongTimeAgo = time.Unix(1, 0)

// watch registers src with the hang-up watcher, which makes the fast path
// safe; without one the pump takes the slow path only.
func (p *pump) watch() {
	rc, err := p.src.SyscallConn()
	if err != nil {
		return
	}
	w, err := hangup.Shared()
	if err != nil {
		return
	}
	src := p.src
	wake := func() { src.SetReadDeadline(aLongTimeAgo) }
	rc.Control(func(fd uintptr) { p.wt, err = w.Watch(int(fd), wake) })
	if err != nil || p.wt == nil {
		p.wt = nil
		return
	}
	p.rc, p.call = rc, p.ready
}

// slow leaves the fast path for good: the peer has hung up (or the pump
// ends), and the watcher's wake, done by now, is undone.
func (p *pump) slow() {
	if p.wt == nil {
		return
	}
	p.wt.Woke() // waits for a wake under way
	p.wt.Stop()
	p.wt, p.rc = nil, nil
	p.src.SetReadDeadline(time.Time{})
}

// fast relays src inside one RawConn.Read until the stream ends (done),
// the peer hangs up, or bulk is queued.
func (p *pump) fast() (done bool, err error) {
	p.left, p.err = leaveHup, nil
	if err := p.rc.Read(p.call); err != nil {
		if p.wt.Woke() {
			return true, quiet(err) // closed
		}
		p.slow() // woken by the watcher
		return false, nil
	}
	switch p.left {
	case leaveDone:
		return true, p.err
	case leaveBulk:
		if err := p.sp.move(p.n); err != nil {
			return true, quiet(err)
		}
	default:
		p.slow()
	}
	return false, nil
}

// ready is the callback of src's RawConn.Read: called at once, then each
// time src may have become readable. It relays what src holds and
// returns false to wait for more.
func (p *pump) ready(fd uintptr) bool {
	if !p.wt.Woke() {
		p.left = leaveHup
		return true
	}
	for {
		k, oobn, flags, err := recvmsg(int(fd), p.buf, p.oob)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return p.wait()
		}
		var rerr error
		if err != nil {
			rerr = os.NewSyscallError("recvmsg", err)
		}
		if done, err := p.forward(k, oobn, flags, rerr); done {
			p.left, p.err = leaveDone, err
			return true
		}
		switch {
		case k == len(p.buf) && oobn == 0:
			if p.sp.open() {
				p.left = leaveBulk // spliced outside: it reads src itself
				return true
			}
		case oobn > 0:
			// More may be queued after the message that carried
			// descriptors: read on.
		default:
			waitsWithoutRead.Add(1)
			if testHookWaiting != nil {
				testHookWaiting(p)
			}
			return p.wait()
		}
	}
}

// wait returns the callback's answer for a wait: false to wait, or true,
// with the slow path to follow, when the peer has hung up.
func (p *pump) wait() bool {
	if p.wt.Waiting() {
		return false
	}
	p.left = leaveHup
	return true
}

// forward sends on what a read of src took: k bytes, and oob's first
// oobn bytes of descriptors. done, with the pump's result, when the read
// ended the stream (passed on as dst's half-close) or failed.
func (p *pump) forward(k, oobn, flags int, rerr error) (done bool, err error) {
	dst, buf := p.dst, p.buf
	if oobn > 0 {
		fds := rights(p.oob[:oobn])
		if flags&unix.MSG_CTRUNC != 0 {
			closeAll(fds)
			return true, errors.New("file descriptors truncated")
		}
		w, _, werr := dst.WriteMsgUnix(buf[:k], p.oob[:oobn], nil)
		// Ours are copies: the receiver has its own now.
		closeAll(fds)
		if werr == nil && w < k {
			// A stream socket may take part of a message (sendmsg
			// returns short when dst's buffer fills); the
			// descriptors went with that part.
			_, werr = dst.Write(buf[w:k])
		}
		if werr != nil {
			return true, quiet(werr)
		}
		p.n.Add(int64(k))
	} else if k > 0 {
		if _, werr := dst.Write(buf[:k]); werr != nil {
			return true, quiet(werr)
		}
		p.n.Add(int64(k))
	}
	if rerr != nil || (k == 0 && oobn == 0) {
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return true, quiet(rerr)
		}
		// End of stream: pass it on and let the other direction
		// finish.
		dst.CloseWrite()
		return true, nil
	}
	return false, nil
}

// recvmsg is recvmsg(2) on the non-blocking socket fd, with descriptors
// received close-on-exec as Go's own reads receive them. It is a raw
// system call (no scheduler bookkeeping: it never blocks) with no
// address asked for, so that it allocates nothing.
func recvmsg(fd int, p, oob []byte) (n, oobn, flags int, err error) {
	var iov unix.Iovec
	iov.Base = &p[0]
	iov.SetLen(len(p))
	var msg unix.Msghdr
	msg.Iov = &iov
	msg.SetIovlen(1)
	msg.Control = &oob[0]
	msg.SetControllen(len(oob))
	r, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)),
		uintptr(unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT))
	if e != 0 {
		return 0, 0, 0, e
	}
	return int(r), int(msg.Controllen), int(msg.Flags), nil
}
