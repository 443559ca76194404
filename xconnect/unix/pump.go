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

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
	"github.com/pantavisor/pv/xconnect/hangup"
)

// Pump copies src to dst with the descriptors that come with the bytes,
// until src's end of stream, which it passes on as a half-close of dst. It
// returns nil at a clean end, and when dst's peer is gone (EPIPE): what
// that peer sent the other way before it went is still queued for the
// other direction, which passes it on and then ends on its own. Any other
// end is an error, a reset of src by its peer (gone with bytes of ours
// unread; whatever it sent was read before the reset) or a close
// included: the caller then closes both connections, since the other
// direction's peer would otherwise wait for an end that never comes
// (quiet tells those from failures).
func Pump(dst, src *net.UnixConn, n *atomic.Int64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
		if errors.Is(err, unix.EPIPE) {
			err = nil
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
		if done, err := p.forward(0, k, oobn, flags, rerr); done {
			return err
		}
		if rerr == nil && k == len(p.buf) && oobn == 0 && p.sp.open() {
			// A full buffer: more is likely queued. Bulk moves
			// without a copy while it carries no descriptors.
			if err := p.sp.move(n); err != nil {
				return err
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
// The callback holds src: its Close waits for the callback to return. So
// the callback never waits on dst (xconnect.Conns closes a link's
// provider connections before its consumer ones, and the other direction
// has a callback of its own): it writes to dst only what dst takes at
// once, and leaves the rest, a message with descriptors, and the end of
// stream, to be passed on outside it.
//
// A read shorter than the buffer leaves more queued in two cases, both
// foreign to a link: a reader with SO_PASSCRED, which no socket of a link
// has, stops where the sender's credentials change, and a read stops at a
// byte sent with MSG_OOB, which a link does not carry. A read that took
// descriptors may stop before more bytes too: it is passed on outside the
// callback, and the next callback reads before it waits.
type pump struct {
	dst, src *net.UnixConn
	n        *atomic.Int64
	buf, oob []byte
	sp       *splicer
	rc       syscall.RawConn // src's; nil: the slow path
	dc       syscall.RawConn // dst's
	wt       *hangup.Watch
	call     func(uintptr) bool
	putCall  func(uintptr) bool
	left     leave // why the callback returned
	err      error // the pump's result, when left is leaveDone
	// What the callback read and leaves to be passed on outside it:
	// k bytes of buf from off on, oobn bytes of descriptors in oob.
	k, off, oobn, flags int
	// put's: what to write, how much went, and how it failed.
	out    []byte
	outN   int
	outErr error
}

// Why the fast path's callback returned.
type leave int

const (
	leaveHup  leave = iota // the peer has hung up: the slow path from now on
	leaveBulk              // a full buffer: splice what is queued
	leaveRest              // a read to pass on (the rest of): k, off, oobn, flags
	leaveDone              // the stream is over (err says how)
)

// waitsWithoutRead counts the waits the fast path made without a read
// that failed first, for the tests that check it is taken.
var waitsWithoutRead atomic.Int64

// partialPuts counts the reads whose bytes dst took only in part at once
// (zeroPuts: not at all), the rest sent on outside the callback, for the
// test of that path.
var partialPuts, zeroPuts atomic.Int64

// testHookWaiting, when set by a test, runs when the fast path is about
// to wait without reading first.
var testHookWaiting func(*pump)

// watch registers src with the hang-up watcher, which makes the fast path
// safe; without one the pump takes the slow path only.
func (p *pump) watch() {
	dc, err := p.dst.SyscallConn()
	if err != nil {
		return
	}
	wt, rc, err := hangup.WatchConn(p.src)
	if err != nil {
		return
	}
	p.wt, p.rc, p.dc, p.call, p.putCall = wt, rc, dc, p.ready, p.putNow
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
			return true, err // closed
		}
		p.slow() // woken by the watcher
		return false, nil
	}
	switch p.left {
	case leaveDone:
		return true, p.err
	case leaveBulk:
		if err := p.sp.move(p.n); err != nil {
			return true, err
		}
	case leaveRest:
		return p.forward(p.off, p.k, p.oobn, p.flags, nil)
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
		k, oobn, flags, err := xconnect.RawRecvmsg(int(fd), p.buf, p.oob)
		if errors.Is(err, unix.EAGAIN) {
			return p.wait()
		}
		if err != nil {
			p.left, p.err = leaveDone, os.NewSyscallError("recvmsg", err)
			return true
		}
		if oobn > 0 || k == 0 {
			// Descriptors, or the end of stream: passed on
			// outside, where a wait on dst may be needed.
			p.left, p.k, p.off, p.oobn, p.flags = leaveRest, k, 0, oobn, flags
			return true
		}
		put, err := p.put(p.buf[:k])
		p.n.Add(int64(put))
		if err != nil {
			p.left, p.err = leaveDone, err
			return true
		}
		if put < k {
			partialPuts.Add(1)
			if put == 0 {
				zeroPuts.Add(1)
			}
			p.left, p.k, p.off, p.oobn = leaveRest, k, put, 0
			return true
		}
		switch {
		case k == len(p.buf):
			if p.sp.open() {
				p.left = leaveBulk // spliced outside: it reads src itself
				return true
			}
		default:
			waitsWithoutRead.Add(1)
			if testHookWaiting != nil {
				testHookWaiting(p)
			}
			return p.wait()
		}
	}
}

// put writes what dst takes of b at once, without waiting (see pump).
func (p *pump) put(b []byte) (int, error) {
	p.out, p.outN, p.outErr = b, 0, nil
	err := p.dc.Write(p.putCall)
	if err == nil {
		err = p.outErr
	}
	p.out = nil
	return p.outN, err
}

// putNow is put's callback on dst: a method value made once, as a
// closure passed through RawConn would be allocated at every call.
func (p *pump) putNow(fd uintptr) bool {
	var err error
	if p.outN, err = xconnect.RawWriteNow(int(fd), p.out); err != nil {
		p.outErr = os.NewSyscallError("write", err)
	}
	return true // what dst did not take is passed on outside
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

// forward sends on what a read of src took and is not yet sent: buf from
// off to k, and oob's first oobn bytes of descriptors (with those, off is
// 0). done, with the pump's result, when the read ended the stream
// (passed on as dst's half-close) or failed.
func (p *pump) forward(off, k, oobn, flags int, rerr error) (done bool, err error) {
	dst, buf := p.dst, p.buf
	if oobn > 0 {
		fds := rights(p.oob[:oobn])
		if flags&unix.MSG_CTRUNC != 0 {
			closeAll(fds)
			return true, errors.New("file descriptors truncated")
		}
		// Held until dst takes them, for as long as its reader leaves
		// it full: counted, as they are the supervisor's own.
		if !xconnect.TakeDescriptors(len(fds)) {
			closeAll(fds)
			return true, fmt.Errorf("%d file descriptors passed beyond the links' share of the supervisor's", len(fds))
		}
		w, _, werr := dst.WriteMsgUnix(buf[:k], p.oob[:oobn], nil)
		// Ours are copies: the receiver has its own now.
		closeAll(fds)
		xconnect.GiveDescriptors(len(fds))
		if werr == nil && w < k {
			// A stream socket may take part of a message (sendmsg
			// returns short when dst's buffer fills); the
			// descriptors went with that part.
			_, werr = dst.Write(buf[w:k])
		}
		if werr != nil {
			return true, werr
		}
		p.n.Add(int64(k))
	} else if k > off {
		if _, werr := dst.Write(buf[off:k]); werr != nil {
			return true, werr
		}
		p.n.Add(int64(k - off))
	}
	if rerr != nil || (k == 0 && oobn == 0) {
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return true, rerr
		}
		// End of stream: pass it on and let the other direction
		// finish.
		dst.CloseWrite()
		return true, nil
	}
	return false, nil
}
