package ctrl

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// fuzzAllowed5xx are the 5xx answers the server documents for a healthy
// backend and storage, by status: any other 5xx (500 "Internal error"
// above all) is a bug.
var fuzzAllowed5xx = map[int][]string{
	// POST /signal from the host: upstream's answer.
	http.StatusInternalServerError: {errJSON(msgSignalRefused)},
	http.StatusNotImplemented: {
		errJSON("ENABLE_SSH: there is no debug ssh server"),
		errJSON("DISABLE_SSH: there is no debug ssh server"),
	},
	http.StatusServiceUnavailable:  {errJSON(msgCommandBusy), errJSON(msgTooManyConns), errJSON(update.MsgUpdateOngoing)},
	http.StatusInsufficientStorage: {errJSON(msgNoSpace), errJSON(msgTooManyMeta)},
}

// FuzzServer sends arbitrary method, path and body to the whole server (a
// fake backend, a temporary storage, the host as caller, so every route is
// reached): it must never panic (a panic is answered 500 "Internal error")
// and never answer a 5xx other than fuzzAllowed5xx, or net/http's own
// plain-text 501/505 for a transfer encoding or protocol version it does
// not take (reachable when the fuzzed path smuggles header lines).
//
// The requests are malformed too: extra raw header lines (a second
// Content-Length, chunked encoding, garbage) and a Content-Length that
// lies by lenDelta bytes, after which the client half-closes, so a body
// shorter than announced ends in EOF rather than the body timeout.
func FuzzServer(f *testing.F) {
	for _, rt := range routeTable {
		path := strings.ReplaceAll(rt.pattern, wildcard, "x")
		f.Add(rt.method, path, "", false, "", int8(0))
		f.Add(rt.method, path, "{}", true, "", int8(0))
		f.Add(rt.method, path, "{}", false, "", int8(5))
	}
	f.Add("PUT", "/containers/app", `{"action":"stop"}`, false, "Content-Length: 3\r\n", int8(0))
	f.Add("POST", "/signal", `{"type":"ready"`, false, "Transfer-Encoding: chunked\r\n", int8(0))
	f.Add("POST", "/commands", "5\r\n{\"op\"\r\n0\r\n\r\n", false, "Transfer-Encoding: chunked\r\n", int8(0))
	f.Add("PUT", "/user-meta/k", "v", false, "X: \x00\r\nbad header\r\n", int8(0))
	f.Add("PUT", "/objects/"+shaX, "xx", false, "", int8(100))
	f.Add("PUT", "/steps/locals/perm", permState, false, "", int8(-10))
	f.Add("POST", "/commands", `{"op":"RUN_GC"}`, false, "", int8(-128))
	f.Add("PUT", "/containers/app", `{"action":"stop"}`, false, "", int8(0))
	f.Add("POST", "/signal", `{"type":"ready","payload":"x"}`, false, "", int8(0))
	f.Add("POST", "/commands", `{"op":"RUN_GC"}`, false, "", int8(0))
	f.Add("POST", "/commands", `{"op":"MAKE_FACTORY","payload":"perm"}`, false, "", int8(0))
	f.Add("POST", "/commands", `{"op":"LOCAL_RUN","payload":"../x"}`, false, "", int8(0))
	f.Add("PUT", "/objects/"+shaX, "x", false, "", int8(0))
	f.Add("PUT", "/steps/locals/perm", permState, false, "", int8(0))
	f.Add("PUT", "/steps/locals/perm/commitmsg", "why", false, "", int8(0))
	f.Add("GET", "/steps/locals/perm/progress", "", true, "", int8(0))
	f.Add("GET", "/%2e%2e/x", "", false, "", int8(0))
	f.Add("GET", "/objects/x\r\nTransfer-Encoding: gzip", "", false, "", int8(0))

	root := f.TempDir()
	s := New(newFakeBackend(), fixedResolver("", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.SetStorage(Storage{Layout: storage.Layout{Root: root}, State: state.Options{AppEngine: true}, MaxObject: 1 << 20})
	s.SetConfig(config.New())
	if err := s.SetMeta(f.TempDir(), f.TempDir()); err != nil {
		f.Fatal(err)
	}
	sock := serveTest(f, s)

	f.Fuzz(func(t *testing.T, method, path, body string, http10 bool, headers string, lenDelta int8) {
		proto := "HTTP/1.1"
		if http10 {
			proto = "HTTP/1.0"
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req := fmt.Sprintf("%s %s %s\r\nHost: localhost\r\nContent-Length: %d\r\n%s\r\n%s", method, path, proto, len(body)+int(lenDelta), headers, body)
		if _, err := io.WriteString(c, req); err != nil {
			return // refused before the whole request was taken
		}
		if lenDelta != 0 || headers != "" {
			// No more is coming: a short body ends in EOF.
			c.(*net.UnixConn).CloseWrite()
		}
		res, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%q: no answer: %v", req, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode < 500 {
			return
		}
		if strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") &&
			(res.StatusCode == http.StatusNotImplemented || res.StatusCode == http.StatusHTTPVersionNotSupported) {
			return // net/http's own, before any handler
		}
		for _, ok := range fuzzAllowed5xx[res.StatusCode] {
			if string(b) == ok {
				return
			}
		}
		t.Fatalf("%q: undocumented %d %s", req, res.StatusCode, b)
	})
}
