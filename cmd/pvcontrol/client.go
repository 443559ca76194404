package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Upstream pvcontrol's curl limits: --connect-timeout 5 --max-time 240,
// and 4 hours for an object upload.
const (
	connectTimeout = 5 * time.Second
	requestTimeout = 240 * time.Second
	uploadTimeout  = 4 * time.Hour
)

// dialSocket connects to the unix socket sock, retrying within
// connectTimeout while its listen backlog is full: a unix socket's
// non-blocking connect (Go's, always) fails with EAGAIN then, where a
// blocking one, and curl's --connect-timeout, would wait for room. A
// burst of connections from elsewhere (a container opening them without
// end) fills the backlog for a moment while the server catches up; the
// host's pvcontrol must not fail for it.
func dialSocket(ctx context.Context, d *net.Dialer, sock string) (net.Conn, error) {
	deadline := time.Now().Add(connectTimeout)
	wait := 5 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "unix", sock)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().Add(wait).After(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// client sends requests to pv-ctrl over its unix socket.
type client struct {
	sock    string
	hc      *http.Client
	verbose bool
	log     io.Writer
}

func newClient(sock string, verbose bool, log io.Writer) *client {
	dialer := &net.Dialer{Timeout: connectTimeout}
	return &client{
		sock:    sock,
		verbose: verbose,
		log:     log,
		// Each request has its own deadline (send): uploads get longer.
		hc: &http.Client{
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return dialSocket(ctx, dialer, sock)
				},
				DisableCompression: true,
			},
		},
	}
}

// response is a whole answer from the server.
type response struct {
	status int
	body   []byte
}

// do sends one request; the error is about reaching the server, not about
// its answer.
func (c *client) do(method, path, contentType string, body []byte) (*response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	if c.verbose {
		fmt.Fprintf(c.log, "* socket %s\n> %s %s\n", c.sock, method, path)
		if body != nil {
			fmt.Fprintf(c.log, "> %d bytes: %s\n", len(body), preview(body))
		}
	}
	return c.send(method, path, contentType, rd, int64(len(body)), requestTimeout)
}

// upload sends size bytes read from r, streamed, within timeout: objects
// can be far larger than memory and take far longer than other requests.
func (c *client) upload(method, path string, r io.Reader, size int64, timeout time.Duration) (*response, error) {
	if c.verbose {
		fmt.Fprintf(c.log, "* socket %s\n> %s %s\n> %d bytes\n", c.sock, method, path, size)
	}
	return c.send(method, path, "application/octet-stream", r, size, timeout)
}

// send is one request with the whole answer read.
func (c *client) send(method, path, contentType string, body io.Reader, size int64, timeout time.Duration) (*response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The host is only a placeholder for the socket; pv-ctrl wants it to be
	// localhost.
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.ContentLength = size
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if c.verbose {
		fmt.Fprintf(c.log, "< %s (%d bytes)\n", res.Status, len(b))
	}
	return &response{status: res.StatusCode, body: b}, nil
}

// preview shortens a request body for -v.
func preview(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// errorMessage is the server's Error message, or what there is instead.
func errorMessage(r *response) string {
	var e struct{ Error string }
	if json.Unmarshal(r.body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if s := strings.TrimSpace(string(r.body)); s != "" {
		return s
	}
	return http.StatusText(r.status)
}

// exitCode maps an answer to pvcontrol's exit code, as upstream's script:
// three messages have their own code, then 503 (busy, try again) is 75,
// any other non-200 answer is 255.
func exitCode(status int, msg string) int {
	switch {
	case status == http.StatusOK:
		return exitOK
	case strings.Contains(msg, "Not enough disk space available"):
		return exitNoSpace
	case strings.Contains(msg, "Object has bad checksum"):
		return exitBadChecksum
	case strings.Contains(msg, "State verification has failed"):
		return exitBadState
	case status == http.StatusServiceUnavailable:
		return exitBusy
	}
	return exitFailed
}
