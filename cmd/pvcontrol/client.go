package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Upstream pvcontrol's curl limits: --connect-timeout 5 --max-time 240,
// and 4 hours for an object upload (and here a download: objects can be
// gigabytes on slow flash).
const (
	connectTimeout = 5 * time.Second
	requestTimeout = 240 * time.Second
	uploadTimeout  = 4 * time.Hour
)

// client sends requests to pv-ctrl over its unix socket, one connection
// per request ("Connection: close"). It speaks the HTTP/1.1 that pv-ctrl
// answers itself rather than through net/http's client: pvcontrol sends
// one request, or a few, per run, and net/http's transport (with the TLS,
// X.509 and HTTP/2 it links in) was half the binary and most of the
// start-up that every `pvcontrol ls` pays.
type client struct {
	sock    string
	verbose bool
	log     io.Writer
}

func newClient(sock string, verbose bool, log io.Writer) *client {
	return &client{sock: sock, verbose: verbose, log: log}
}

// response is an answer from the server.
type response struct {
	status int
	reason string // of the status line: "Not Found"
	body   []byte
	// streamed is the length of a 200 answer's body copied to the sink of
	// stream, which body then does not hold.
	streamed int64
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
	return c.send(method, path, contentType, rd, int64(len(body)), requestTimeout, nil)
}

// stream sends a request without a body and copies the body of a 200
// answer to sink as it arrives, rather than holding it: an object can be
// larger than memory. Any other answer is read whole into the response.
// An error writing to sink is an *outputError.
func (c *client) stream(method, path string, sink io.Writer, timeout time.Duration) (*response, error) {
	if c.verbose {
		fmt.Fprintf(c.log, "* socket %s\n> %s %s\n", c.sock, method, path)
	}
	return c.send(method, path, "", nil, 0, timeout, sink)
}

// sizedSink is a sink told the length of the body before its first
// byte, when the answer gives one: a download's progress.
type sizedSink interface{ expect(size int64) }

// outputError is a failure to write an answer's body where it goes (a
// full disk, a closed pipe), not to read it from the socket.
type outputError struct{ err error }

func (e *outputError) Error() string { return "write output: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// outputWriter marks its writer's errors as *outputError.
type outputWriter struct{ w io.Writer }

func (o outputWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		err = &outputError{err}
	}
	return n, err
}

// upload sends size bytes read from r, streamed, within timeout: objects
// can be far larger than memory and take far longer than other requests.
// name is what r reads, for errors: a file's name, "stdin". When r fails
// or ends early the request is abandoned and the error is a *sourceError.
func (c *client) upload(method, path, name string, r io.Reader, size int64, timeout time.Duration) (*response, error) {
	if c.verbose {
		fmt.Fprintf(c.log, "* socket %s\n> %s %s\n> %d bytes from %s\n", c.sock, method, path, size, name)
	}
	res, err := c.send(method, path, "application/octet-stream", r, size, timeout, nil)
	if se := (*sourceError)(nil); errors.As(err, &se) {
		se.name = name
	}
	return res, err
}

// sourceError is a failure to read a request's body from where it comes
// (a file cut short, a disk error, a pipe closed early), as opposed to a
// failure to send it: it is pvcontrol's side that is wrong, not the
// server's.
type sourceError struct {
	name string // what was read: a file's name
	err  error
}

func (e *sourceError) Error() string { return "read " + e.name + ": " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// sourceReader passes reads through and keeps the first error other than
// io.EOF, so that a failed copy can tell its source's error from its
// destination's.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// send is one request with the whole answer read, all within timeout;
// the body of a 200 answer goes to sink when it is not nil.
func (c *client) send(method, path, contentType string, body io.Reader, size int64, timeout time.Duration, sink io.Writer) (*response, error) {
	head, err := requestHead(method, path, contentType, body != nil, size)
	if err != nil {
		return nil, err
	}
	conn, err := dialSocket(c.sock, time.Now().Add(timeout))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	werr := writeRequest(conn, head, body, size)
	if se := (*sourceError)(nil); errors.As(werr, &se) {
		// The request cannot be completed: closing the connection at once
		// tells the server so, where waiting for its answer would wait
		// out its body timeout for a 500 that blames it.
		return nil, werr
	}
	res, status, rerr := readResponse(bufio.NewReader(conn), method, sink)
	switch {
	case werr != nil && rerr != nil:
		// The server may answer and close before it read the whole body
		// (413: too large); only when there is no answer is the failed
		// write the news.
		return nil, fmt.Errorf("send request: %w", werr)
	case rerr != nil:
		return nil, fmt.Errorf("read answer: %w", rerr)
	}
	if c.verbose {
		fmt.Fprintf(c.log, "< %s (%d bytes)\n", status, int64(len(res.body))+res.streamed)
	}
	return res, nil
}

// requestHead is the head of a request to pv-ctrl. Host is localhost, as
// pv-ctrl wants it; a method or path that would break the request line is
// refused rather than sent.
func requestHead(method, path, contentType string, hasBody bool, size int64) ([]byte, error) {
	if method == "" || strings.ContainsAny(method, " \t\r\n/") {
		return nil, fmt.Errorf("bad method %q", method)
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n") {
		return nil, fmt.Errorf("bad path %q: must start with / and hold no spaces", path)
	}
	if strings.ContainsAny(contentType, "\r\n") {
		return nil, fmt.Errorf("bad content type %q", contentType)
	}
	b := make([]byte, 0, 128+len(path))
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pvcontrol\r\nConnection: close\r\n"...)
	if contentType != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, contentType...)
		b = append(b, "\r\n"...)
	}
	if hasBody {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, size, 10)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...), nil
}

// writeRequest writes head, then exactly size bytes of body. A body that
// fails to read, or holds fewer than size bytes, is a *sourceError; any
// other error is the connection's.
func writeRequest(w io.Writer, head []byte, body io.Reader, size int64) error {
	if body == nil {
		_, err := w.Write(head)
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(head); err != nil {
		return err
	}
	src := &sourceReader{r: body}
	n, err := io.CopyN(bw, src, size)
	switch {
	case src.err != nil:
		return &sourceError{err: src.err}
	case errors.Is(err, io.EOF):
		return &sourceError{err: fmt.Errorf("ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)}
	case err != nil:
		return err
	}
	return bw.Flush()
}

// readResponse reads the answer to a request of method: its status, and
// its body framed as HTTP/1.1 frames it (Content-Length, chunked, or up
// to the end of the connection). Interim 1xx answers are skipped. The
// body of a 200 answer is copied to sink when it is not nil (a failure to
// write it is an *outputError), else kept in the response.
func readResponse(br *bufio.Reader, method string, sink io.Writer) (*response, string, error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, "", err
		}
		proto, status, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
			return nil, "", fmt.Errorf("not an HTTP/1 answer: %q", line)
		}
		codeText, _, _ := strings.Cut(status, " ")
		code, err := strconv.Atoi(codeText)
		if err != nil || len(codeText) != 3 {
			return nil, "", fmt.Errorf("bad status in %q", line)
		}
		te, cl, err := readFraming(br)
		if err != nil {
			return nil, "", fmt.Errorf("headers: %w", err)
		}
		if code >= 100 && code < 200 {
			continue
		}
		_, reason, _ := strings.Cut(status, " ")
		res := &response{status: code, reason: reason}
		if method == "HEAD" || code == 204 || code == 304 {
			return res, status, nil
		}
		if te != "" && !strings.EqualFold(te, "chunked") {
			return nil, "", fmt.Errorf("transfer encoding %q not understood", te)
		}
		if sink != nil && code == 200 {
			if s, ok := sink.(sizedSink); ok && te == "" {
				if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
					s.expect(n)
				}
			}
			if res.streamed, err = copyBody(outputWriter{sink}, br, te != "", cl); err != nil {
				return nil, "", fmt.Errorf("body: %w", err)
			}
			return res, status, nil
		}
		switch {
		case te != "":
			var body bytes.Buffer
			_, err = readChunked(&body, br)
			res.body = body.Bytes()
		case cl != "":
			n, perr := strconv.ParseInt(cl, 10, 64)
			if perr != nil || n < 0 {
				return nil, "", fmt.Errorf("bad Content-Length %q", cl)
			}
			// Allocated up front only to a point: the length is the
			// server's word.
			if n <= 1<<20 {
				res.body = make([]byte, n)
				_, err = io.ReadFull(br, res.body)
			} else if res.body, err = io.ReadAll(io.LimitReader(br, n)); err == nil && int64(len(res.body)) < n {
				err = io.ErrUnexpectedEOF
			}
			if err == io.EOF { // nothing of a body that has a length
				err = io.ErrUnexpectedEOF
			}
		default:
			res.body, err = io.ReadAll(br)
		}
		if err != nil {
			return nil, "", fmt.Errorf("body: %w", err)
		}
		return res, status, nil
	}
}

// copyBody copies a body to w as it arrives: chunked, or of length cl
// (an error when it ends sooner), or up to the end of the connection
// when there is neither. It returns the bytes copied.
func copyBody(w io.Writer, br *bufio.Reader, chunked bool, cl string) (int64, error) {
	switch {
	case chunked:
		return readChunked(w, br)
	case cl != "":
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad Content-Length %q", cl)
		}
		got, err := io.CopyN(w, br, n)
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("ended after %d of %d bytes: %w", got, n, io.ErrUnexpectedEOF)
		}
		return got, err
	}
	return io.Copy(w, br)
}

// readChunked copies a chunked body to w, trailers dropped, and returns
// the bytes copied.
func readChunked(w io.Writer, br *bufio.Reader) (int64, error) {
	var total int64
	for {
		line, err := readLine(br)
		if err != nil {
			return total, err
		}
		sizeText, _, _ := strings.Cut(line, ";") // chunk extensions
		n, err := strconv.ParseInt(strings.TrimSpace(sizeText), 16, 64)
		if err != nil || n < 0 {
			return total, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for {
				if l, err := readLine(br); err != nil || l == "" {
					return total, err
				}
			}
		}
		got, err := io.CopyN(w, br, n)
		total += got
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, fmt.Errorf("chunk ended after %d of %d bytes: %w", got, n, io.ErrUnexpectedEOF)
			}
			return total, err
		}
		if l, err := readLine(br); err != nil || l != "" {
			return total, fmt.Errorf("chunk of %d bytes not followed by CRLF", n)
		}
	}
}

// maxLine bounds a line of the answer's head or of its chunk framing.
const maxLine = 64 << 10

// readLine reads one line of the head, its CRLF (or LF) removed.
func readLine(br *bufio.Reader) (string, error) {
	var long []byte
	for {
		b, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if long = append(long, b...); len(long) > maxLine {
				return "", fmt.Errorf("a line of the answer is over %d bytes", maxLine)
			}
			continue
		}
		if err != nil {
			if err == io.EOF && len(long)+len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if long != nil {
			b = append(long, b...)
		}
		b = bytes.TrimSuffix(b[:len(b)-1], []byte{'\r'})
		return string(b), nil
	}
}

// readFraming reads the header fields of an answer up to the empty line
// and keeps the two that frame its body: Transfer-Encoding and
// Content-Length, the first of each.
func readFraming(br *bufio.Reader) (te, cl string, err error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return "", "", err
		}
		if line == "" {
			return te, cl, nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return "", "", fmt.Errorf("malformed header line %q", line)
		}
		value = strings.TrimSpace(value)
		switch {
		case te == "" && strings.EqualFold(name, "Transfer-Encoding"):
			te = value
		case cl == "" && strings.EqualFold(name, "Content-Length"):
			cl = value
		}
	}
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
	if r.reason != "" {
		return r.reason
	}
	return fmt.Sprintf("HTTP %d", r.status)
}

// exitCode maps an answer to pvcontrol's exit code, as upstream's script:
// three messages have their own code, then 503 (busy, try again) is 75,
// any other non-200 answer is 255.
func exitCode(status int, msg string) int {
	switch {
	case status == 200:
		return exitOK
	case strings.Contains(msg, "Not enough disk space available"):
		return exitNoSpace
	case strings.Contains(msg, "Object has bad checksum"):
		return exitBadChecksum
	case strings.Contains(msg, "State verification has failed"):
		return exitBadState
	case status == 503:
		return exitBusy
	}
	return exitFailed
}
