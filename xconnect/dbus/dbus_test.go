package dbus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/pantavisor/pv/xconnect"
)

func TestMain(m *testing.M) {
	xconnect.HelperMain()
	os.Exit(m.Run())
}

func TestLookup(t *testing.T) {
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\noperator:x:1001:1005::/:/bin/sh\nbroken:x:abc:1\nnobody:x:65534:65534::/:/bin/false\n" +
		"huge:x:4294967296:1::/:/bin/sh\nhugegid:x:7:4294967296::/:/bin/sh\nminus1:x:4294967295:1::/:/bin/sh\n")
	for _, c := range []struct {
		role     string
		uid, gid int
	}{
		{"operator", 1001, 1005},
		{"1001", 1001, 1005},
		{"4242", 4242, 4242},
		{"root", 0, 0},
		{"any", Nobody, Nobody},
		{"broken", Nobody, Nobody},
		{"", Nobody, Nobody},
		{"-1", Nobody, Nobody},
		// Past 32 bits, or (uid_t)-1: no such user (the helper cut
		// 2^32 to uid 0).
		{"huge", Nobody, Nobody},
		{"hugegid", Nobody, Nobody},
		{"minus1", Nobody, Nobody},
	} {
		if u, g := Lookup(c.role, passwd); u != c.uid || g != c.gid {
			t.Errorf("Lookup(%q) = %d:%d, want %d:%d", c.role, u, g, c.uid, c.gid)
		}
	}
	if u, _ := Lookup("operator", nil); u != Nobody {
		t.Errorf("no passwd: %d", u)
	}
}

func FuzzLookup(f *testing.F) {
	f.Add("operator", "operator:x:1001:1001::/:/bin/sh\n")
	f.Add("12", "a:b:c:d\n:::\n")
	f.Fuzz(func(t *testing.T, role, passwd string) {
		u, g := Lookup(role, []byte(passwd))
		if u < 0 || g < 0 {
			t.Fatalf("negative id %d:%d", u, g)
		}
	})
}

func TestCommand(t *testing.T) {
	for line, want := range map[string]string{
		"AUTH EXTERNAL 30\r\n":  "AUTH",
		"AUTH\tEXTERNAL 30\r\n": "AUTH",
		"AUTH\r\n":              "AUTH",
		"AUTH \r\n":             "AUTH",
		"BEGIN\r\n":             "BEGIN",
		"DATA\t3330\r\n":        "DATA",
		"\r\n":                  "",
	} {
		if got := Command([]byte(line)); got != want {
			t.Errorf("Command(%q) = %q, want %q", line, got, want)
		}
	}
}

func FuzzCommand(f *testing.F) {
	f.Add([]byte("AUTH EXTERNAL 30\r\n"))
	f.Add([]byte("BEGIN\r\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		if c := Command(line); strings.ContainsAny(c, " \t\r\n") && !strings.Contains(strings.TrimRight(string(line), "\r\n"), c) {
			t.Fatalf("Command(%q) = %q", line, c)
		}
	})
}

// busConf lets anybody connect, root own org.pantavisor.Test, and only
// the user named call it.
const busConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <deny send_destination="org.pantavisor.Test"/>
    <allow send_type="method_return"/>
    <allow receive_sender="*"/>
  </policy>
  <policy user="root"><allow own="org.pantavisor.Test"/></policy>
  <policy user="%s"><allow send_destination="org.pantavisor.Test"/></policy>
</busconfig>
`

type pinger struct{}

func (pinger) Ping() (string, *godbus.Error) { return "pong", nil }

// startBus runs a private dbus-daemon allowing only user to call Ping on
// org.pantavisor.Test, served by this process; it returns the bus socket.
func startBus(t *testing.T, user string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (credentials of other uids)")
	}
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("needs dbus-daemon")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "bus.sock")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConf, sock, user)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var conn *godbus.Conn
	for i := 0; i < 100; i++ {
		if conn, err = godbus.Connect("unix:path=" + sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.Export(pinger{}, "/org/pantavisor/Test", "org.pantavisor.Test")
	if r, err := conn.RequestName("org.pantavisor.Test", godbus.NameFlagDoNotQueue); err != nil || r != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own name: %v %v", r, err)
	}
	return sock
}

// link serves a dbus link with role in front of the bus at sock; the
// provider's passwd maps operator to 2 (bin on the host: a stock daemon
// answers only uids its own passwd knows).
func link(t *testing.T, sock, role string) string {
	t.Helper()
	passwd := []byte("root:x:0:0::/:/bin/sh\noperator:x:2:2::/:/bin/sh\n")
	p := New(xconnect.Config{Link: xconnect.Link{Consumer: "app", Provider: "bus", Name: "system-bus", Type: "dbus", Role: role},
		Stats: &xconnect.Stats{},
		DialAs: func(ctx context.Context, uid, gid int) (net.Conn, error) {
			return xconnect.DialAs(ctx, 0, sock, uid, gid)
		},
		ReadProviderFile: func(string) ([]byte, error) { return passwd, nil },
	})
	cons := filepath.Join(t.TempDir(), "consumer.sock")
	ln, err := net.Listen("unix", cons)
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Close() })
	return cons
}

func call(addr string) (string, error) {
	conn, err := godbus.Connect("unix:path=" + addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	var s string
	err = conn.Object("org.pantavisor.Test", "/org/pantavisor/Test").Call("org.pantavisor.Test.Ping", 0).Store(&s)
	return s, err
}

// Through the link the bus sees the role's uid, whatever the caller is
// (root here): operator may call, another role is refused by the
// daemon's policy, and the caller itself, direct, is refused too.
func TestRolesAreTheProvidersUids(t *testing.T) {
	sock := startBus(t, "bin")
	if s, err := call(link(t, sock, "operator")); err != nil || s != "pong" {
		t.Fatalf("operator: %q %v", s, err)
	}
	if s, err := call(link(t, sock, "2")); err != nil || s != "pong" {
		t.Fatalf("numeric role 2: %q %v", s, err)
	}
	_, err := call(link(t, sock, "guest"))
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") && !strings.Contains(err.Error(), "Rejected") {
		t.Fatalf("guest (nobody) was not refused by the bus: %v", err)
	}
	if _, err := call(sock); err == nil {
		t.Fatal("root may call directly: the policy proves nothing")
	}
}

// dbus-send, libdbus's client, works through the link as well.
func TestDbusSendThroughTheLink(t *testing.T) {
	sock := startBus(t, "bin")
	send, err := exec.LookPath("dbus-send")
	if err != nil {
		t.Skip("needs dbus-send")
	}
	out, err := exec.Command(send, "--bus=unix:path="+link(t, sock, "operator"), "--print-reply",
		"--dest=org.pantavisor.Test", "/org/pantavisor/Test", "org.pantavisor.Test.Ping").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pong") {
		t.Fatalf("dbus-send: %v\n%s", err, out)
	}
}

// busctl (sd-bus) sends "AUTH EXTERNAL", "DATA" and BEGIN without waiting
// for replies: its DATA answers a challenge the provider never makes,
// since the link's AUTH carries the uid, and must not reach the provider.
func TestBusctlThroughTheLink(t *testing.T) {
	sock := startBus(t, "bin")
	busctl, err := exec.LookPath("busctl")
	if err != nil {
		t.Skip("needs busctl")
	}
	out, err := exec.Command(busctl, "--address=unix:path="+link(t, sock, "operator"), "call",
		"org.pantavisor.Test", "/org/pantavisor/Test", "org.pantavisor.Test", "Ping").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pong") {
		t.Fatalf("busctl: %v\n%s", err, out)
	}
}

// An AUTH whose words a tab separates is an AUTH to dbus-daemon too: it
// is replaced like any other, and the daemon accepts the role's uid. Passed
// on unchanged it named uid 0, which the daemon refused.
func TestAuthSeparatedByATabIsReplaced(t *testing.T) {
	sock := startBus(t, "bin")
	c, err := net.Dial("unix", link(t, sock, "operator"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("\x00AUTH\tEXTERNAL 30\r\n")); err != nil {
		t.Fatal(err)
	}
	reply, err := lineReader{c}.line()
	if err != nil {
		t.Fatal(err)
	}
	if Command(reply) != "OK" {
		t.Fatalf("the bus answered %q, want OK", reply)
	}
}

// A provider's passwd that cannot be read (the provider restarting) ends
// the connection: the role is not quietly connected as nobody. One that
// does not exist makes every name nobody.
func TestUnreadablePasswdIsNotNobody(t *testing.T) {
	for _, tc := range []struct {
		err   error
		wantN int
	}{{errors.New("provider restarting"), 0}, {fs.ErrNotExist, 1}} {
		var dials atomic.Int32
		st := &xconnect.Stats{}
		p := New(xconnect.Config{Link: xconnect.Link{Consumer: "app", Provider: "bus", Name: "system-bus", Type: "dbus", Role: "operator"},
			Stats: st,
			DialAs: func(ctx context.Context, uid, gid int) (net.Conn, error) {
				dials.Add(1)
				if uid != Nobody {
					t.Errorf("dialled as uid %d, want nobody", uid)
				}
				return nil, errors.New("no bus here")
			},
			ReadProviderFile: func(string) ([]byte, error) { return nil, tc.err },
		})
		cons := filepath.Join(t.TempDir(), "consumer.sock")
		ln, err := net.Listen("unix", cons)
		if err != nil {
			t.Fatal(err)
		}
		go p.Serve(ln)
		c, err := net.Dial("unix", cons)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("%v: the connection was not closed", tc.err)
		}
		c.Close()
		p.Close()
		if n := int(dials.Load()); n != tc.wantN {
			t.Errorf("%v: %d dials, want %d", tc.err, n, tc.wantN)
		}
	}
}
