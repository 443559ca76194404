package http

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
)

// A request that does not fit the socket at once is written whole before
// its answer is read.
func TestSendReadWritesWhatTheSocketCannotTake(t *testing.T) {
	ours, theirs := nstest.UnixPair(t)
	req := bytes.Repeat([]byte("x"), 8<<20) // more than a unix socket's buffer
	go func() {
		if n, _ := io.CopyN(io.Discard, theirs, int64(len(req))); n == int64(len(req)) {
			io.WriteString(theirs, "answer")
		}
	}()
	sr := newSendRead(ours)
	if !sr.send(req) {
		t.Fatal("no raw access to a unix connection")
	}
	ours.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(io.LimitReader(sr, 6))
	if err != nil || string(got) != "answer" {
		t.Fatalf("read %q: %v", got, err)
	}
}
