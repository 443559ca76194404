package unix

import (
	"bytes"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/nstest"
)

// Bulk between descriptors goes by splice, and every descriptor still
// arrives, usable, with the bytes it was sent with and in order: 64 MiB
// of a counting pattern with a memfd naming its offset every 1 MiB.
func TestBulkSplicedDescriptorsKept(t *testing.T) {
	const total, every, chunk = 64 << 20, 1 << 20, 128 << 10
	sender, in := nstest.UnixPair(t)    // consumer's socket, proxy's accepted one
	out, receiver := nstest.UnixPair(t) // proxy's to the provider, provider's
	var n atomic.Int64
	done := make(chan error, 1)
	go func() { done <- Pump(out, in, &n) }()
	before := spliced.Load()

	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		for off := 0; off < total; off += chunk {
			for i := range buf {
				buf[i] = byte(off + i)
			}
			if off%every == 0 {
				fd := memfd(t, strconv.Itoa(off))
				w, _, err := sender.WriteMsgUnix(buf, unix.UnixRights(fd), nil)
				unix.Close(fd)
				if err == nil && w < len(buf) {
					_, err = sender.Write(buf[w:])
				}
				if err != nil {
					sent <- err
					return
				}
				continue
			}
			if _, err := sender.Write(buf); err != nil {
				sent <- err
				return
			}
		}
		sent <- sender.CloseWrite()
	}()

	receiver.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf, oob := make([]byte, 256<<10), make([]byte, oobSize)
	got, want := 0, 0 // bytes read; offset the next descriptor must name
	for {
		k, oobn, _, _, err := receiver.ReadMsgUnix(buf, oob)
		for _, fd := range rights(oob[:oobn]) {
			b := make([]byte, 32)
			m, _ := unix.Pread(fd, b, 0)
			unix.Close(fd)
			if string(b[:m]) != strconv.Itoa(want) {
				t.Fatalf("descriptor %q arrived where %d was due", b[:m], want)
			}
			// It comes with its bytes or before them, never after.
			if got > want {
				t.Fatalf("descriptor of offset %d arrived after byte %d", want, got)
			}
			want += every
		}
		for i := 0; i < k; i++ {
			if buf[i] != byte(got+i) {
				t.Fatalf("byte %d is %d, want %d", got+i, buf[i], byte(got+i))
			}
		}
		got += k
		if err != nil || (k == 0 && oobn == 0) {
			break
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got != total || want != total {
		t.Fatalf("got %d bytes and descriptors up to %d, want %d of each", got, want, total)
	}
	if n.Load() != total {
		t.Errorf("counted %d bytes, want %d", n.Load(), total)
	}
	if s := spliced.Load() - before; s < total/2 {
		t.Errorf("only %d of %d bytes were spliced: bulk took the copy path", s, total)
	} else {
		t.Logf("%d of %d bytes spliced", s, total)
	}
}

// Small messages still take the recvmsg path, one call each way.
func TestSmallMessagesNotSpliced(t *testing.T) {
	sender, in := nstest.UnixPair(t)
	out, receiver := nstest.UnixPair(t)
	var n atomic.Int64
	go Pump(out, in, &n)
	before := spliced.Load()
	buf := make([]byte, 64)
	for i := 0; i < 100; i++ {
		msg := []byte(fmt.Sprintf("%063d", i))
		sender.Write(msg)
		receiver.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := receiver.Read(buf[:63]); err != nil || !bytes.Equal(buf[:63], msg) {
			t.Fatalf("message %d: %q, %v", i, buf[:63], err)
		}
	}
	if s := spliced.Load() - before; s != 0 {
		t.Errorf("%d bytes of small messages were spliced", s)
	}
}
