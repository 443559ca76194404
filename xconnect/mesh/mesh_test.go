package mesh

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/xconnect"
)

// relayProxy is the plainest plugin: a byte relay per connection. The
// plugins have their own tests; this one tests what mesh does around them.
type relayProxy struct {
	cfg  xconnect.Config
	mu   sync.Mutex
	done bool
}

func (p *relayProxy) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		go func() {
			b, err := p.cfg.Dial(context.Background())
			if err != nil {
				c.Close()
				return
			}
			xconnect.Relay(c, b, p.cfg.Stats)
		}()
	}
}

func (p *relayProxy) Close() error { return nil }

func testPlane() *Plane {
	return &Plane{Proxies: map[string]NewProxy{
		"unix": func(cfg xconnect.Config) xconnect.Proxy { return &relayProxy{cfg: cfg} },
	}}
}

// echoServer answers each connection with what it read, upper-cased by
// nothing: an echo until EOF.
func echoServer(t *testing.T, path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeEach(t, ln, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		c.Write(b)
	})
}

func roundTrip(t *testing.T, path, msg string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// Pid 0 for the consumer makes its end on the host, and this process as
// the provider resolves the provider's socket in our own root: what mesh
// does around the namespaces is tested here, the namespaces by the
// integration tests.
func TestEstablishUnixLinkFollowsTheProvider(t *testing.T) {
	dir := t.TempDir()
	prov := filepath.Join(dir, "prov.sock")
	echoServer(t, prov)
	l := xconnect.Link{Consumer: "app", Provider: "svc", Name: "echo", Type: "unix", Socket: prov,
		Target: filepath.Join(dir, "consumer", "run", "echo.sock")}
	st := &xconnect.Stats{}
	s, err := testPlane().Establish(l, xconnect.Ends{ProviderPid: os.Getpid()}, st)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(t, l.Target, "hello"); err != nil || got != "hello" {
		t.Fatalf("through the link: %q %v", got, err)
	}
	if st.BytesUp.Load() != 5 || st.BytesDown.Load() != 5 {
		t.Errorf("stats %+v", st.Snapshot())
	}

	// The provider is restarting: a connection waits for it, and goes
	// through once it is back.
	s.Provider(xconnect.Ends{ProviderRestarting: true})
	res := make(chan string, 1)
	go func() {
		got, err := roundTrip(t, l.Target, "later")
		if err != nil {
			got = err.Error()
		}
		res <- got
	}()
	select {
	case got := <-res:
		t.Fatalf("answered while the provider was away: %q", got)
	case <-time.After(200 * time.Millisecond):
	}
	s.Provider(xconnect.Ends{ProviderPid: os.Getpid()})
	if got := <-res; got != "later" {
		t.Fatalf("after the provider came back: %q", got)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(l.Target); !os.IsNotExist(err) {
		t.Fatalf("consumer end still there after Close: %v", err)
	}
}

func TestEstablishRefusesWhatItCannotMake(t *testing.T) {
	dir := t.TempDir()
	p := testPlane()
	cases := map[string]xconnect.Link{
		"no plugin":     {Consumer: "a", Name: "x", Type: "wayland", Target: filepath.Join(dir, "w.sock")},
		"relative path": {Consumer: "a", Name: "x", Type: "unix", Target: "run/x.sock"},
	}
	if err := os.Mkdir(filepath.Join(dir, "taken"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases["not a socket there"] = xconnect.Link{Consumer: "a", Name: "x", Type: "unix", Target: filepath.Join(dir, "taken")}
	for name, l := range cases {
		if s, err := p.Establish(l, xconnect.Ends{ProviderPid: os.Getpid()}, &xconnect.Stats{}); err == nil {
			s.Close()
			t.Errorf("%s: established", name)
		}
	}
}
