package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// TestReadResponse: the framings pv-ctrl (net/http's server) answers with,
// and answers that must be refused rather than taken short or whole.
func TestReadResponse(t *testing.T) {
	for _, c := range []struct {
		name, method, in string
		status           int
		body             string
		err              string
	}{
		{"content length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more", 200, "hello", ""},
		{"chunked, extension and trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n", 200, "hello", ""},
		{"to the end", "GET", "HTTP/1.0 404 Not Found\r\n\r\n{\"Error\":\"x\"}", 404, `{"Error":"x"}`, ""},
		{"interim 100 skipped", "PUT", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 201, "ok", ""},
		{"HEAD has no body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 200, "", ""},
		{"short body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", 0, "", "unexpected EOF"},
		{"length, no body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 0, "", "unexpected EOF"},
		{"huge length, short body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\nx", 0, "", "unexpected EOF"},
		{"bad length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, "", "bad Content-Length"},
		{"short chunk", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nabc", 0, "", "chunk ended after 3 of 255 bytes"},
		{"chunk without CRLF", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhelXX\r\n0\r\n\r\n", 0, "", "not followed by CRLF"},
		{"bad chunk size", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, "", "bad chunk size"},
		{"other coding", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, "", `transfer encoding "gzip"`},
		{"not HTTP", "GET", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", "not an HTTP/1 answer"},
		{"bad status", "GET", "HTTP/1.1 2000 OK\r\n\r\n", 0, "", "bad status"},
		{"nothing", "GET", "", 0, "", "EOF"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, _, err := readResponse(bufio.NewReader(strings.NewReader(c.in)), c.method, nil)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.status != c.status || string(res.body) != c.body {
				t.Errorf("got %d %q, want %d %q", res.status, res.body, c.status, c.body)
			}
		})
		// Streamed to a sink, a 200 answer's body is the same, framed the
		// same; another answer's body is still kept.
		t.Run(c.name+", streamed", func(t *testing.T) {
			var sink bytes.Buffer
			res, _, err := readResponse(bufio.NewReader(strings.NewReader(c.in)), c.method, &sink)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body := string(res.body)
			if c.status == 200 {
				if res.body != nil || res.streamed != int64(sink.Len()) {
					t.Errorf("body %q kept, %d bytes counted for %d streamed", res.body, res.streamed, sink.Len())
				}
				body = sink.String()
			}
			if res.status != c.status || body != c.body {
				t.Errorf("got %d %q, want %d %q", res.status, body, c.status, c.body)
			}
		})
	}
	// A sink that fails is the output's error, not the answer's.
	_, _, err := readResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")), "GET",
		failWriter{errors.New("no space left on device")})
	if oe := (*outputError)(nil); !errors.As(err, &oe) || !strings.Contains(err.Error(), "write output: no space left on device") {
		t.Errorf("failing sink: %v, want an *outputError", err)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

// TestRequestHead refuses what would break the request line or a header.
func TestRequestHead(t *testing.T) {
	h, err := requestHead("PUT", "/user-meta/a%20b", "text/plain", true, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := "PUT /user-meta/a%20b HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pvcontrol\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
	if string(h) != want {
		t.Errorf("head %q, want %q", h, want)
	}
	for _, bad := range [][3]string{{"GET", "/a b", ""}, {"GET", "a", ""}, {"GET", "/a\r\nX: y", ""}, {"G T", "/", ""}, {"", "/", ""}, {"GET", "/", "a\r\nb: c"}} {
		if _, err := requestHead(bad[0], bad[1], bad[2], false, 0); err == nil {
			t.Errorf("%q %q %q: no error", bad[0], bad[1], bad[2])
		}
	}
}

// TestAnswerBeforeTheWholeBody: a server that refuses a body at its limit
// answers 413 and closes without reading the rest; pvcontrol reports the
// 413, not the broken pipe of its write.
func TestAnswerBeforeTheWholeBody(t *testing.T) {
	sock, l := listenTemp(t)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c)
		for { // the head only
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 30\r\nConnection: close\r\n\r\n{\"Error\":\"body over 1048576\"}\n")
		c.Close()
	}()
	cl := newClient(sock, false, io.Discard)
	res, err := cl.upload("PUT", "/objects/x", "zeros", bytes.NewReader(make([]byte, 64<<20)), 64<<20, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.status != http.StatusRequestEntityTooLarge || errorMessage(res) != "body over 1048576" {
		t.Errorf("got %d %q", res.status, res.body)
	}
}

// listenTemp listens on a fresh unix socket, closed when the test ends.
func listenTemp(t *testing.T) (string, net.Listener) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return sock, l
}

// FuzzReadResponse: any answer is parsed or refused, never a panic, and a
// body taken is never longer than what came.
func FuzzReadResponse(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n")
	f.Add("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		res, _, err := readResponse(bufio.NewReader(strings.NewReader(in)), "GET", nil)
		if err == nil && len(res.body) > len(in) {
			t.Fatalf("a body of %d bytes from %d", len(res.body), len(in))
		}
	})
}

// TestUploadSourceFails: a body that fails to read, or ends before its
// length, abandons the request at once (the server sees the connection
// close) and is reported as the source's error, not the server's.
func TestUploadSourceFails(t *testing.T) {
	const size = 2 << 20
	half := func() io.Reader { return bytes.NewReader(make([]byte, size/2)) }
	for _, c := range []struct {
		name string
		body io.Reader
		want string
	}{
		{"read error", io.MultiReader(half(), iotest.ErrReader(errors.New("input/output error"))), "read src: input/output error"},
		{"short", half(), "read src: ended after 1048576 of 2097152 bytes: unexpected EOF"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sock, l := listenTemp(t)
			closed := make(chan error, 1)
			go func() {
				conn, err := l.Accept()
				if err != nil {
					closed <- err
					return
				}
				defer conn.Close()
				// Read all that comes and never answer, as a server
				// waiting for the rest of the body.
				_, err = io.Copy(io.Discard, conn)
				closed <- err
			}()
			cl := newClient(sock, false, io.Discard)
			res, err := cl.upload("PUT", "/objects/x", "src", c.body, size, 10*time.Second)
			var se *sourceError
			if !errors.As(err, &se) || err.Error() != c.want {
				t.Fatalf("upload = %v, %v; want the source's error %q", res, err, c.want)
			}
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("server: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("the connection was not closed after the source failed")
			}
		})
	}
}
