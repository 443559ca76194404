package xconnect

import (
	"net"
	"testing"
	"time"
)

// pair is the two ends of one loopback TCP connection.
func pair(t *testing.T) (a, b *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		got <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s == nil {
		t.Fatal("accept failed")
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// A consumer that resets its connection ends the relay even when the
// provider keeps its side open and silent.
func TestRelayEndsOnReset(t *testing.T) {
	client, cEnd := pair(t)
	pEnd, provider := pair(t)
	defer provider.Close()
	done := make(chan error, 1)
	go func() { done <- Relay(cEnd, pEnd, &Stats{}) }()
	client.SetLinger(0) // close sends a reset
	client.Close()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		pEnd.Close()
		cEnd.Close()
		t.Fatal("the relay outlived the consumer's reset")
	}
}
