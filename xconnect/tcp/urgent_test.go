package tcp

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/nstest"
)

// sendUrgent writes "abc", one byte of urgent data ("X", MSG_OOB) and
// "def", a pause after each part so that each arrives on its own.
func sendUrgent(t *testing.T, c net.Conn) {
	t.Helper()
	c.Write([]byte("abc"))
	time.Sleep(30 * time.Millisecond)
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { err = unix.Sendto(int(fd), []byte("X"), unix.MSG_OOB, nil) })
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	c.Write([]byte("def"))
}

// What a backend got: its in-band bytes, and the urgent byte read out of
// band at the mark.
type urgentSeen struct {
	inBand string
	urgent byte
}

// readUrgent reads a connection as a receiver of urgent data does: the
// three bytes before the mark, the urgent byte out of band (it waits for
// it, as a receiver told by SIGURG would), then the rest, until want
// in-band bytes came or 2 s passed.
func readUrgent(c net.Conn, want int) urgentSeen {
	var seen urgentSeen
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, want)
	if _, err := io.ReadFull(c, buf[:3]); err != nil {
		return seen
	}
	seen.inBand = string(buf[:3])
	rc, _ := c.(*net.TCPConn).SyscallConn()
	for deadline := time.Now().Add(2 * time.Second); seen.urgent == 0 && time.Now().Before(deadline); {
		rc.Control(func(fd uintptr) {
			var b [1]byte
			if k, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_OOB|unix.MSG_DONTWAIT); err == nil && k == 1 {
				seen.urgent = b[0]
			}
		})
		time.Sleep(5 * time.Millisecond)
	}
	n, _ := io.ReadFull(c, buf[3:])
	seen.inBand += string(buf[3 : 3+n])
	return seen
}

// Urgent data in the middle of a stream, as telnet's Synch or ftp's ABOR
// send it: the splice loop stopped at it for good (the bytes after it
// never came), or, with the client's end queued behind them, ended the
// stream there as if it were clean. Now the backend gets every in-band
// byte, and the urgent byte out of band, as it would straight from the
// client.
func TestUrgentDataThroughTheRelay(t *testing.T) {
	for _, end := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan urgentSeen, 1)
		nstest.ServeEach(t, ln, func(c net.Conn) { got <- readUrgent(c, 6) })
		addr, _ := start(t, ln.Addr().String(), Options{})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		sendUrgent(t, c)
		if end {
			c.(*net.TCPConn).CloseWrite()
		}
		if s := <-got; s.inBand != "abcdef" || s.urgent != 'X' {
			t.Errorf("client end sent %v: the backend got %q in band and %q out of band, want \"abcdef\" and 'X'", end, s.inBand, s.urgent)
		}
		c.Close()
	}
}

// The same into a unix backend, which the burst pump feeds: it spun
// without moving a byte past the urgent data. A unix socket has no out of
// band to carry the urgent byte: the in-band bytes go on.
func TestUrgentDataToAUnixBackend(t *testing.T) {
	path := t.TempDir() + "/b.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	nstest.ServeEach(t, ln, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var all []byte
		buf := make([]byte, 64)
		for len(all) < 6 {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- string(all)
	})
	addr, _ := toUnix(t, path)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendUrgent(t, c)
	if s := <-got; s != "abcdef" {
		t.Errorf("the unix backend got %q, want \"abcdef\"", s)
	}
}
