package ctrl

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTransferEncodingIdentity sends, on one kept-alive connection, what
// upstream's pvcontrol sends for an object upload ("Transfer-Encoding:
// identity" beside Content-Length), twice pipelined, with a body that
// itself holds the header's text, then a chunked upload: every one is
// taken and its body stored as sent. After a chunked body the connection
// is passed through unchanged (teConn does not follow chunks): a later
// identity upload on it gets net/http's 501, as it did before teConn.
func TestTransferEncodingIdentity(t *testing.T) {
	st := newStorage(t)
	sock := startServerWith(t, newFakeBackend(), fixedResolver("", nil), st)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	identity := func(body string) string {
		return "PUT /objects/" + shaOf(body) + " HTTP/1.1\r\nHost: localhost\r\n" +
			"Content-Type: application/octet-stream\r\ntransfer-encoding:  Identity \r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	trap := "x\r\n\r\nPUT /objects/a HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"
	chunked := "PUT /objects/" + shaOf("chunked") + " HTTP/1.1\r\nHost: localhost\r\n" +
		"Transfer-Encoding: chunked\r\n\r\n7\r\nchunked\r\n0\r\n\r\n"
	if _, err := io.WriteString(c, identity("one")+identity(trap)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	read := func(what string) {
		t.Helper()
		res, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("%s = %d %s", what, res.StatusCode, b)
		}
	}
	read("identity upload")
	read("identity upload holding a head")
	if _, err := io.WriteString(c, identity(strings.Repeat("z", 100000))+chunked); err != nil {
		t.Fatal(err)
	}
	read("identity upload larger than a read buffer")
	read("chunked upload")
	for _, body := range []string{"one", trap, "chunked", strings.Repeat("z", 100000)} {
		if err := st.Layout.Verify(shaOf(body)); err != nil {
			t.Errorf("object %.20q: %v", body, err)
		}
	}
}
