// Package network groups the mechanisms behind IPAM pools: ipam (the pure
// address allocator), link (bridges, veths and macvlans with netlink) and nat
// (MASQUERADE, forwarding and isolation rules with go-iptables). None of them
// knows about actors: the pool actor decides when, they decide how.
package network
