// Package dbus is the xconnect plugin for a provider's D-Bus: the
// provider's own dbus-daemon decides what a consumer may do, by its
// policy, from the uid the consumer authenticates as. That uid is the
// link's role as the provider knows it — a number is itself, a name is
// looked up in the provider's /etc/passwd, anything else is nobody
// (65534) — whatever the consumer's processes really are.
//
// A stock dbus-daemon checks the uid of AUTH EXTERNAL against the
// socket's peer credentials, so rewriting the SASL line alone (upstream's
// way) is refused: each connection to the provider is made with the
// role's credentials (xconnect.DialAs), then the consumer's AUTH is
// replaced by AUTH EXTERNAL for that uid, the rest of the handshake
// passes through line by line, and after BEGIN the messages flow as on
// a unix link, file descriptors included.
package dbus

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"time"

	"github.com/pantavisor/pv/xconnect"
	"github.com/pantavisor/pv/xconnect/unix"
)

// Nobody is the uid, and gid, of a role the provider does not know.
const Nobody = 65534

// New makes the proxy of cfg.Link. It needs cfg.DialAs.
func New(cfg xconnect.Config) xconnect.Proxy {
	return unix.NewWith(cfg, func(ctx context.Context, c *net.UnixConn) (*net.UnixConn, error) {
		if cfg.DialAs == nil {
			return nil, errors.New("dbus link without a way to dial as the role")
		}
		var passwd []byte
		if cfg.ReadProviderFile != nil {
			var err error
			// A provider without a passwd knows no names: the role
			// is nobody. Any other failure (a provider restarting,
			// a passwd too large) ends this connection instead of
			// quietly connecting a named role as nobody.
			if passwd, err = cfg.ReadProviderFile("/etc/passwd"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("dbus link: the provider's /etc/passwd: %w", err)
			}
		}
		uid, gid := Lookup(cfg.Link.Role, passwd)
		p, err := cfg.DialAs(ctx, uid, gid)
		if err != nil {
			return nil, err
		}
		pu, ok := p.(*net.UnixConn)
		if !ok {
			p.Close()
			return nil, fmt.Errorf("dbus link: provider connection is %T", p)
		}
		if err := Handshake(c, pu, uid); err != nil {
			pu.Close()
			return nil, fmt.Errorf("dbus link: authentication as uid %d: %w", uid, err)
		}
		return pu, nil
	})
}

// Lookup is the uid and gid of role in passwd (an /etc/passwd): a number
// is that uid (with its passwd gid, or the same number); a name found is
// its entry; anything else, and an empty role, is Nobody.
func Lookup(role string, passwd []byte) (uid, gid int) {
	if n, err := strconv.Atoi(role); err == nil && n >= 0 && n < 1<<31-1 {
		for line := range bytes.SplitSeq(passwd, []byte("\n")) {
			if f := bytes.Split(line, []byte(":")); len(f) >= 4 && string(f[2]) == role {
				if g, err := strconv.Atoi(string(f[3])); err == nil && validID(g) {
					return n, g
				}
			}
		}
		return n, n
	}
	if role == "" {
		return Nobody, Nobody
	}
	for line := range bytes.SplitSeq(passwd, []byte("\n")) {
		f := bytes.Split(line, []byte(":"))
		if len(f) < 4 || string(f[0]) != role {
			continue
		}
		u, err1 := strconv.Atoi(string(f[2]))
		g, err2 := strconv.Atoi(string(f[3]))
		if err1 == nil && err2 == nil && validID(u) && validID(g) {
			return u, g
		}
	}
	return Nobody, Nobody
}

// validID says x is a uid or gid the kernel takes: below 2^32-1, which is
// (uid_t)-1. A larger one in a provider's passwd was cut to 32 bits by the
// dial helper's credentials (2^32 became 0, root) while AUTH named it
// whole; such an entry now counts as none.
func validID(x int) bool { return x >= 0 && x < 1<<32-1 }

// The SASL exchange is a few short lines; these bound what a consumer may
// make pantavisor wait for and read.
var (
	authTimeout  = 30 * time.Second
	maxLine      = 16 << 10
	maxExchanges = 32
)

// Handshake relays the D-Bus authentication between the consumer c and
// the provider p, the consumer's AUTH replaced by AUTH EXTERNAL as uid
// (whatever mechanism it chose; a bare AUTH, which asks for the
// mechanisms, is answered with EXTERNAL alone), up to and including
// BEGIN. It reads one byte at a time, so that
// nothing after BEGIN (the consumer's first messages) is taken from c:
// the relay that follows reads it.
func Handshake(c, p *net.UnixConn, uid int) error {
	deadline := time.Now().Add(authTimeout)
	c.SetReadDeadline(deadline)
	p.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	defer p.SetReadDeadline(time.Time{})
	nul := make([]byte, 1)
	if _, err := c.Read(nul); err != nil {
		return fmt.Errorf("read the consumer's first byte: %w", err)
	}
	if nul[0] != 0 {
		return errors.New("the consumer did not start with the credentials byte")
	}
	if _, err := p.Write(nul); err != nil {
		return err
	}
	auth := []byte("AUTH EXTERNAL " + hex.EncodeToString([]byte(strconv.Itoa(uid))) + "\r\n")
	cr, pr := lineReader{c}, lineReader{p}
	// authed: the provider accepted the AUTH, whose initial response
	// already carried the uid. A client that sent "AUTH EXTERNAL" bare
	// and "DATA" without waiting (sd-bus does) answers a challenge the
	// provider never made: that DATA is answered here with the provider's OK,
	// not relayed, which the provider would answer with ERROR.
	var authed []byte
	for range maxExchanges {
		line, err := cr.line()
		if err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		switch Command(line) {
		case "AUTH":
			if len(bytes.TrimSpace(line)) == len("AUTH") {
				// A client listing mechanisms (godbus does) is
				// offered EXTERNAL alone: that is what the
				// provider will get.
				if _, err := c.Write([]byte("REJECTED EXTERNAL\r\n")); err != nil {
					return err
				}
				continue
			}
			line = auth
		case "DATA":
			if authed != nil {
				if _, err := c.Write(authed); err != nil {
					return err
				}
				continue
			}
		case "BEGIN":
			_, err := p.Write(line)
			return err
		}
		if _, err := p.Write(line); err != nil {
			return err
		}
		reply, err := pr.line()
		if err != nil {
			return fmt.Errorf("provider: %w", err)
		}
		if Command(line) == "AUTH" {
			authed = nil
			if Command(reply) == "OK" {
				authed = reply
			}
		}
		if _, err := c.Write(reply); err != nil {
			return err
		}
	}
	return errors.New("too many authentication exchanges")
}

// Command is the command word of a SASL line ("AUTH", "BEGIN", ...). It
// ends at a space or a tab, as dbus-daemon's parser reads it: a line the
// daemon takes for an AUTH must be one here too, or it would reach the
// daemon unchanged.
func Command(line []byte) string {
	line = bytes.TrimRight(line, "\r\n")
	if i := bytes.IndexAny(line, " \t"); i >= 0 {
		line = line[:i]
	}
	return string(line)
}

// lineReader reads "\r\n"-ended lines one byte at a time.
type lineReader struct{ c net.Conn }

func (r lineReader) line() ([]byte, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < maxLine {
		if _, err := r.c.Read(b); err != nil {
			return nil, err
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			return line, nil
		}
	}
	return nil, fmt.Errorf("line longer than %d bytes", maxLine)
}
