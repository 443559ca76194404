// Package drm is the xconnect plugin that gives a consumer one of the
// provider's devices (a GPU's render node, say): no proxy, a device node
// with the provider's device number, type, mode and owner, made at the
// consumer's target. The consumer's device cgroup decides whether it may
// open it (lxc.cgroup.devices.allow in its config).
package drm

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
)

// Inject makes the provider's device node (the export's socket path, inside
// the provider) at the link's consumer end inside the consumer.
func Inject(l xconnect.Link, e xconnect.Ends) (xconnect.Injected, error) {
	if l.Socket == "" {
		return xconnect.Injected{}, fmt.Errorf("drm service %q of %s exports no device path (socket)", l.Name, l.Provider)
	}
	f, err := xconnect.OpenIn(e.ProviderPid, l.Socket)
	if err != nil {
		return xconnect.Injected{}, fmt.Errorf("device of drm service %q in %s: %w", l.Name, l.Provider, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return xconnect.Injected{}, fmt.Errorf("stat %s in %s: %w", l.Socket, l.Provider, err)
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFCHR && t != unix.S_IFBLK {
		return xconnect.Injected{}, fmt.Errorf("drm service %q: %s in %s is not a device node", l.Name, l.Socket, l.Provider)
	}
	return xconnect.Mknod(e.ConsumerPid, l.ConsumerEnd(), st.Mode, st.Rdev, int(st.Uid), int(st.Gid))
}
