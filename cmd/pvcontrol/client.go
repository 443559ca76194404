package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Upstream pvcontrol's curl limits: --connect-timeout 5 --max-time 240.
const (
	connectTimeout = 5 * time.Second
	requestTimeout = 240 * time.Second
)

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
		hc: &http.Client{
			Timeout: requestTimeout,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return dialer.DialContext(ctx, "unix", sock)
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
	// The host is only a placeholder for the socket; pv-ctrl wants it to be
	// localhost.
	req, err := http.NewRequest(method, "http://localhost"+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.verbose {
		fmt.Fprintf(c.log, "* socket %s\n> %s %s\n", c.sock, method, path)
		if body != nil {
			fmt.Fprintf(c.log, "> %d bytes: %s\n", len(body), preview(body))
		}
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

// exitCode maps an answer to pvcontrol's exit code, as upstream: three
// messages have their own code, any other non-200 answer is 255.
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
	}
	return exitFailed
}
