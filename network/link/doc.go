// Package link builds the kernel side of IPAM pools with netlink: the pool
// bridge, one veth pair per container on a bridge pool, one macvlan per
// container on a macvlan pool. A container's end is created directly inside
// its network namespace (libcontainer exposes it as /proc/<pid>/ns/net
// between Start and Exec), named eth0, given its address, MAC and default
// route, all through a netlink handle bound to that namespace, so no OS
// thread ever switches namespace.
//
// Every function undoes its partial work when it fails, and every error
// names the link it was working on. Nothing here decides when to act or
// which address to use: the pool actor does, with package ipam.
package link
