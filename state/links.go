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
		msg := tcpTargetProblem(end)
		switch {
		case msg == "":
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
// of the link, and the key it was read from ("" for the default): it
// mirrors xconnect.Link ConsumerEnd (the target, else the interface, else
// /tmp/pvx_<consumer>_<name>.sock, as upstream).
func consumerEnd(consumer string, r ServiceRequirement) (end, key string) {
	switch {
	case r.Target != "":
		return r.Target, "target"
	case r.Interface != "":
		return r.Interface, "interface"
	}
	return fmt.Sprintf("/tmp/pvx_%s_%s.sock", consumer, r.Name), ""
}

// tcpTargetProblem says why s cannot be the consumer end of a tcp or http
// link, or "". It mirrors xconnect/http ParseTarget, which the link plane
// listens with; state cannot import it (xconnect imports state), and
// TestLinkTargetsAgreeWithTheLinkPlane keeps the two in step.
func tcpTargetProblem(s string) string {
	hostport, _, _ := strings.Cut(s, "/")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Sprintf("want IP:PORT[/prefix] or :PORT[/prefix], got %q", s)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Sprintf("%q is not an IP address", host)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %q is not 1-65535", port)
	}
	return ""
}
