package state

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// checkConsumerEnd checks the consumer end of the link that requirement r
// of container c makes to export e, the way the link plane will set it up
// (xconnect/mesh Plane.Establish): a tcp or http link listens on
// IP:PORT[/prefix], every other type makes a socket or device node at an
// absolute path inside the consumer. The link plane retries a link it
// cannot set up for ever, so a consumer end it can never make is an error
// here, on the key it came from.
func (p *parser) checkConsumerEnd(file, at string, c *Container, r ServiceRequirement, e *ServiceExport) {
	typ := r.Type
	if typ == "" {
		typ = e.Type
	}
	if typ == "" {
		return // the export's type is unknown: reported on services.json
	}
	end, key := consumerEnd(c.Name, r)
	switch typ {
	case "tcp", "http":
		addr, msg := ParseLinkTarget(end)
		switch {
		case msg == "":
			p.linkListeners = append(p.linkListeners, linkListener{
				file: file, at: joinPath(at, key), consumer: c.Name, netns: netnsOf(c), addr: addr, end: end})
		case key == "":
			p.errorf(file, joinPath(at, "target"), "missing: a %s link listens on IP:PORT or :PORT inside %s (without a target it would be the socket %s)", typ, c.Name, end)
		default:
			p.errorf(file, joinPath(at, key), "a %s link listens on an address: %s", typ, msg)
		}
	default:
		if !path.IsAbs(end) {
			p.errorf(file, joinPath(at, key), "must be an absolute path inside %s for a %s link, got %q", c.Name, typ, end)
		}
	}
}

// consumerEnd is where requirement r of container consumer makes its end
// of the link (LinkEnd), and the key it was read from ("" for the
// default).
func consumerEnd(consumer string, r ServiceRequirement) (end, key string) {
	switch {
	case r.Target != "":
		key = "target"
	case r.Interface != "":
		key = "interface"
	}
	return LinkEnd(consumer, r.Name, r.Target, r.Interface), key
}

// LinkEnd is where a link's socket is made inside its consumer: the
// target, else the interface, else /tmp/pvx_<consumer>_<name>.sock, as
// upstream does. The link plane (xconnect.Link.ConsumerEnd) and
// validation both use it.
func LinkEnd(consumer, name, target, iface string) string {
	switch {
	case target != "":
		return target
	case iface != "":
		return iface
	}
	return fmt.Sprintf("/tmp/pvx_%s_%s.sock", consumer, name)
}

// ParseLinkTarget reads the consumer end of a tcp or http link,
// "IP:PORT[/prefix]" or ":PORT[/prefix]" (0.0.0.0 then), into the address
// the link plane listens on; msg says why it is none. xconnect/http's
// ParseTarget, which the link plane listens with, is built on it.
func ParseLinkTarget(s string) (netip.AddrPort, string) {
	hostport, _, _ := strings.Cut(s, "/")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Sprintf("want IP:PORT[/prefix] or :PORT[/prefix], got %q", s)
	}
	addr := netip.IPv4Unspecified()
	if host != "" {
		if addr, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Sprintf("%q is not an IP address", host)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return netip.AddrPort{}, fmt.Sprintf("port %q is not 1-65535", port)
	}
	return netip.AddrPortFrom(addr, uint16(n)), ""
}

// linkListener is the consumer end of a tcp or http link: an address the
// link plane listens on (xconnect.ListenTCP) in the consumer's network
// namespace.
type linkListener struct {
	file, at string // where its target was read
	consumer string
	netns    string // see netnsOf
	addr     netip.AddrPort
	end      string
}

// netnsOf names the network namespace container c runs in: "" for the
// device's, shared by the ingress listeners and by every container
// without a pool (mode host, or no network key: pvr's template keeps the
// host's network, "lxc.namespace.keep = user net ipc"), else c's own.
func netnsOf(c *Container) string {
	if c.Network != nil && c.Network.Mode == NetPool {
		return c.Name
	}
	return ""
}

// validateLinkListeners checks that no tcp or http link listens where
// something else in the same network namespace does already: an ingress
// listener (in the device's) or another link. ListenTCP would fail for
// ever on the second.
func (p *parser) validateLinkListeners() {
	ingress := p.ingressListeners
	if ingress == nil {
		ingress = newListenIndex()
	}
	byNetns := map[string]*listenIndex{}
	for i, l := range p.linkListeners {
		where := "the device's network namespace"
		if l.netns != "" {
			where = "the network namespace of " + l.consumer
		}
		earlier := byNetns[l.netns]
		if earlier == nil {
			earlier = newListenIndex()
			byNetns[l.netns] = earlier
		}
		switch j, k := ingress.overlapping(l.addr), earlier.overlapping(l.addr); {
		case l.netns == "" && j >= 0:
			p.errorf(l.file, l.at, "%s collides with device.json %s (%s) in %s", l.end, p.ingressAt[j], p.st.Ingress[j].External, where)
		case k >= 0:
			o := p.linkListeners[k]
			p.errorf(l.file, l.at, "%s collides with %s: %s (%s) in %s", l.end, o.file, o.at, o.end, where)
		}
		earlier.add(l.addr, i)
	}
}
