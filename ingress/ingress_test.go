package ingress

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/xconnect"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A tcp listener relays to a port on loopback (a provider in the device's
// namespace); an http one routes to a unix-socket backend and a port by
// prefix; Backend moves the provider; a bad listener type is refused.
func TestListen(t *testing.T) {
	// Backends: HTTP on a port and on a unix socket.
	portLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(portLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "port "+r.URL.Path) }))
	defer portLn.Close()
	_, p, _ := net.SplitHostPort(portLn.Addr().String())
	port, _ := strconv.Atoi(p)
	sock := filepath.Join(t.TempDir(), "api.sock")
	unixLn, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(unixLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "unix "+r.URL.Path) }))
	defer unixLn.Close()

	plane := &Plane{}
	self := xconnect.Ends{ProviderPid: os.Getpid()}
	httpAddr := freeAddr(t)
	s, err := plane.Listen(actors.IngressListener{Type: "http", Addr: httpAddr, Rules: []actors.IngressRule{
		{IngressRule: state.IngressRule{Type: "http", Prefix: "/", Provider: "web"}, Port: port},
		{IngressRule: state.IngressRule{Type: "http", Prefix: "/api", Provider: "api"}, Socket: sock},
	}}, []*xconnect.Stats{{}, {}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Backend(0, self)
	s.Backend(1, self)
	c := http.Client{Timeout: 5 * time.Second}
	for path, want := range map[string]string{"/x": "port /x", "/api/y": "unix /y"} {
		resp, err := c.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("%s: %q, want %q", path, b, want)
		}
	}
	if d := s.Describe(); !strings.Contains(d, "http "+httpAddr) {
		t.Errorf("describe %q", d)
	}

	tcpAddr := freeAddr(t)
	ts, err := plane.Listen(actors.IngressListener{Type: "tcp", Addr: tcpAddr, Rules: []actors.IngressRule{
		{IngressRule: state.IngressRule{Type: "tcp", Provider: "web"}, Port: port}}}, []*xconnect.Stats{{}})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	ts.Backend(0, self)
	resp, err := c.Get("http://" + tcpAddr + "/t")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "port /t" {
		t.Errorf("through tcp: %q", b)
	}

	if _, err := plane.Listen(actors.IngressListener{Type: "udp", Addr: freeAddr(t)}, nil); err == nil {
		t.Error("a udp listener was opened")
	}
	if _, err := plane.Listen(actors.IngressListener{Type: "tcp", Addr: httpAddr, Rules: []actors.IngressRule{{}}}, []*xconnect.Stats{{}}); err == nil {
		t.Error("an address in use was bound twice")
	}
}
