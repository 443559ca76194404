package lxcconf

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/pantavisor/pv/spec"
)

// upstreamTemplate is what upstream's pvr writes for an nginx container.
const upstreamTemplate = `lxc.tty.max = 8
lxc.pty.max = 1024
lxc.cgroup.devices.allow = a
lxc.rootfs.path = overlayfs:/volumes/nginx/root.squashfs:/volumes/nginx/lxc-overlay/upper
lxc.init.cmd = /docker-entrypoint.sh "nginx" "-g" "daemon off;"
lxc.init.cwd = /
lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
lxc.environment = NGINX_VERSION=1.21.6
lxc.namespace.keep = user net ipc
lxc.mount.auto = proc sys:rw cgroup
lxc.mount.entry = /etc/resolv.conf etc/resolv.conf none bind,rw,create=file 0 0
lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,mode=755 0 0
lxc.mount.entry = /volumes/nginx/docker--etc-nginx etc/nginx none bind,rw,create=dir 0 0
lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.uts.name = nginx
lxc.console.path = none
lxc.log.level = 1
`

func upstreamWant() *spec.Container {
	return &spec.Container{
		Args: []string{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"},
		Cwd:  "/",
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"NGINX_VERSION=1.21.6",
		},
		Hostname: "nginx",
		Mounts: []spec.Mount{
			{Source: "/etc/resolv.conf", Target: "etc/resolv.conf", FSType: "none", Options: []string{"bind", "rw", "create=file"}},
			{Source: "tmpfs", Target: "run", FSType: "tmpfs", Options: []string{"rw", "nodev", "relatime", "mode=755"}},
			{Source: "/volumes/nginx/docker--etc-nginx", Target: "etc/nginx", FSType: "none", Options: []string{"bind", "rw", "create=dir"}},
		},
		MountAuto:     []string{"proc", "sys:rw", "cgroup"},
		NamespaceKeep: []string{"user", "net", "ipc"},
		Net:           []spec.NetInterface{{Index: 0, Type: "veth", Link: "lxcbr0"}},
		DevicesAllow:  []string{"a"},
		TTYMax:        8,
		PTYMax:        1024,
		Rootfs: spec.Rootfs{
			Type:  "overlayfs",
			Lower: "/volumes/nginx/root.squashfs",
			Upper: "/volumes/nginx/lxc-overlay/upper",
		},
	}
}

func u32(n uint32) *uint32 { return &n }

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  *spec.Container
		warns []string // Warning.String() of every warning, in order
	}{
		{
			name: "upstream template",
			in:   upstreamTemplate,
			want: upstreamWant(),
			warns: []string{
				"line 17: lxc.console.path: not supported, ignored",
				"line 18: lxc.log.level: not supported, ignored",
			},
		},
		{
			name: "upstream template with CRLF, BOM and no final newline",
			in:   "\uFEFF" + strings.TrimSuffix(strings.ReplaceAll(upstreamTemplate, "\n", "\r\n"), "\r\n"),
			want: upstreamWant(),
			warns: []string{
				"line 17: lxc.console.path: not supported, ignored",
				"line 18: lxc.log.level: not supported, ignored",
			},
		},
		{
			name: "empty input",
			in:   "",
			want: &spec.Container{},
		},
		{
			name: "comments, blank lines and spacing",
			in:   "# header\n\n   # indented comment\n\tlxc.uts.name=box\t\n   \t\n",
			want: &spec.Container{Hostname: "box"},
		},
		{
			name: "hash after a value is part of it",
			in:   "lxc.init.cmd = /bin/echo a # b\n",
			want: &spec.Container{Args: []string{"/bin/echo", "a", "#", "b"}},
		},
		{
			name: "quotes around a whole value are removed",
			in:   lines(`lxc.uts.name = "box"`, `lxc.environment = 'A=1 2'`),
			want: &spec.Container{Hostname: "box", Env: []string{"A=1 2"}},
		},
		{
			name: "value containing =",
			in:   "lxc.environment = OPTS=a=b\n",
			want: &spec.Container{Env: []string{"OPTS=a=b"}},
		},

		// lxc.init.cmd
		{
			name: "init.cmd double quotes keep semicolons and spaces",
			in:   `lxc.init.cmd = /bin/sh "-c" "echo hi; sleep 1"` + "\n",
			want: &spec.Container{Args: []string{"/bin/sh", "-c", "echo hi; sleep 1"}},
		},
		{
			name: "init.cmd single quotes are literal",
			in:   `lxc.init.cmd = /bin/sh -c 'echo "$HOME" \n'` + "\n",
			want: &spec.Container{Args: []string{"/bin/sh", "-c", `echo "$HOME" \n`}},
		},
		{
			name: "init.cmd backslash escapes",
			in:   `lxc.init.cmd = /bin/echo a\ b "c\"d\\e\$f\g" \'` + "\n",
			want: &spec.Container{Args: []string{"/bin/echo", "a b", `c"d\e$f\g`, "'"}},
		},
		{
			name: "init.cmd empty quoted argument and adjacent quotes",
			in:   `lxc.init.cmd = /bin/prog "" a"b"'c'` + "\n",
			want: &spec.Container{Args: []string{"/bin/prog", "", "abc"}},
		},
		{
			name: "init.cmd first word quoted",
			in:   `lxc.init.cmd = "/bin/sh" "-c" "true"` + "\n",
			want: &spec.Container{Args: []string{"/bin/sh", "-c", "true"}},
		},
		{
			name: "init.cmd quoted program alone",
			in:   `lxc.init.cmd = "/sbin/init"` + "\n",
			want: &spec.Container{Args: []string{"/sbin/init"}},
		},
		{
			name:  "init.cmd whole command quoted is split as LXC does",
			in:    `lxc.init.cmd = "/bin/sh -c true"` + "\n",
			want:  &spec.Container{Args: []string{"/bin/sh", "-c", "true"}},
			warns: []string{"line 1: lxc.init.cmd: whole command is quoted; split inside the quotes as LXC does"},
		},
		{
			name: "init.cmd empty value resets to the default",
			in:   lines("lxc.init.cmd = /bin/x", "lxc.init.cmd ="),
			want: &spec.Container{},
		},
		{
			name: "init.cmd later line wins",
			in:   lines("lxc.init.cmd = /bin/x", "lxc.init.cmd = /bin/y z"),
			want: &spec.Container{Args: []string{"/bin/y", "z"}},
		},

		// lxc.init.cwd, uid, gid
		{
			name: "init cwd uid gid",
			in:   lines("lxc.init.cwd = /srv/app", "lxc.init.uid = 1000", "lxc.init.gid = 0"),
			want: &spec.Container{Cwd: "/srv/app", UID: u32(1000), GID: u32(0)},
		},
		{
			name: "init uid max and reset",
			in:   lines("lxc.init.uid = 4294967295", "lxc.init.gid = 5", "lxc.init.gid ="),
			want: &spec.Container{UID: u32(4294967295)},
		},

		// lxc.environment
		{
			name: "environment duplicate replaces in place",
			in:   lines("lxc.environment = A=1", "lxc.environment = B=2", "lxc.environment = A=3"),
			want: &spec.Container{Env: []string{"A=3", "B=2"}},
		},
		{
			name: "environment empty value clears the list",
			in:   lines("lxc.environment = A=1", "lxc.environment =", "lxc.environment = B=2", "lxc.environment = A=4"),
			want: &spec.Container{Env: []string{"B=2", "A=4"}},
		},
		{
			name: "environment empty variable value is kept",
			in:   "lxc.environment = EMPTY=\n",
			want: &spec.Container{Env: []string{"EMPTY="}},
		},
		{
			name: "environment bare name is skipped with a warning",
			in:   lines("lxc.environment = HOME", "lxc.environment = A=1", "lxc.environment = HOME", "lxc.environment = TERM"),
			want: &spec.Container{Env: []string{"A=1"}},
			warns: []string{
				`line 1: lxc.environment: "HOME" has no value (LXC would copy it from the host); skipped (also on line 3)`,
				`line 4: lxc.environment: "TERM" has no value (LXC would copy it from the host); skipped`,
			},
		},

		// lxc.mount.entry
		{
			name: "mount entry with fstab escapes",
			in:   `lxc.mount.entry = /media/My\040Disk mnt/my\040disk none bind,ro 0 0` + "\n",
			want: &spec.Container{Mounts: []spec.Mount{
				{Source: "/media/My Disk", Target: "mnt/my disk", FSType: "none", Options: []string{"bind", "ro"}},
			}},
		},
		{
			name: "mount entry escaped tab, backslash, and a lone backslash",
			in:   `lxc.mount.entry = a\011b\134c d\e none bind` + "\n",
			want: &spec.Container{Mounts: []spec.Mount{
				{Source: "a\tb\\c", Target: `d\e`, FSType: "none", Options: []string{"bind"}},
			}},
		},
		{
			name: "mount entry four fields, absolute target made relative and cleaned",
			in:   lines("lxc.mount.entry = proc //proc/./ proc nosuid,,nodev", "lxc.mount.entry = /x / none bind 0"),
			want: &spec.Container{Mounts: []spec.Mount{
				{Source: "proc", Target: "proc", FSType: "proc", Options: []string{"nosuid", "nodev"}},
				{Source: "/x", Target: ".", FSType: "none", Options: []string{"bind"}},
			}},
		},
		{
			name: "mount entry tabs between fields",
			in:   "lxc.mount.entry = tmpfs\ttmp\ttmpfs\tdefaults\t0\t0\n",
			want: &spec.Container{Mounts: []spec.Mount{
				{Source: "tmpfs", Target: "tmp", FSType: "tmpfs", Options: []string{"defaults"}},
			}},
		},
		{
			name: "mount entry empty value clears",
			in:   lines("lxc.mount.entry = tmpfs run tmpfs rw 0 0", "lxc.mount.entry =", "lxc.mount.entry = tmpfs tmp tmpfs rw 0 0"),
			want: &spec.Container{Mounts: []spec.Mount{
				{Source: "tmpfs", Target: "tmp", FSType: "tmpfs", Options: []string{"rw"}},
			}},
		},

		// lxc.mount.auto
		{
			name: "mount auto accumulates without duplicates",
			in:   lines("lxc.mount.auto = proc:mixed sys:ro", "lxc.mount.auto = cgroup:rw:force proc:mixed shmounts:/run/x:/x cgroup-full"),
			want: &spec.Container{MountAuto: []string{"proc:mixed", "sys:ro", "cgroup:rw:force", "shmounts:/run/x:/x", "cgroup-full"}},
		},
		{
			name: "mount auto empty value clears",
			in:   lines("lxc.mount.auto = proc sys", "lxc.mount.auto =", "lxc.mount.auto = cgroup"),
			want: &spec.Container{MountAuto: []string{"cgroup"}},
		},

		// Confinement that cannot be enforced refuses the container
		// (Unenforceable); AppArmor is the driver's decision.
		{
			name: "seccomp and include are unenforceable without the revision",
			in: lines("lxc.apparmor.profile = unconfined", "lxc.seccomp.profile = /x",
				"lxc.include = /usr/share/lxc/config/common.conf", "lxc.apparmor.allow_nesting = 1"),
			want: &spec.Container{AppArmorProfile: "unconfined", Unenforceable: []string{
				"lxc.seccomp.profile (line 2): the profile file is not read without the revision",
				"lxc.include (line 3): included files are not read yet",
			}},
		},

		// lxc.idmap
		{
			name: "idmap u, g and b ranges in order",
			in:   lines("lxc.idmap = u 0 100000 65536", "lxc.idmap = g 0 200000 1000", "lxc.id_map = b 65536 300000 1"),
			want: &spec.Container{
				UIDMap: []spec.IDMap{{ContainerID: 0, HostID: 100000, Count: 65536}, {ContainerID: 65536, HostID: 300000, Count: 1}},
				GIDMap: []spec.IDMap{{ContainerID: 0, HostID: 200000, Count: 1000}, {ContainerID: 65536, HostID: 300000, Count: 1}},
			},
			warns: []string{"line 3: lxc.id_map: deprecated name of lxc.idmap"},
		},
		{
			name: "idmap empty value clears the mappings",
			in:   lines("lxc.idmap = u 0 100000 65536", "lxc.idmap = g 0 100000 65536", "lxc.idmap ="),
			want: &spec.Container{},
		},

		// lxc.no_new_privs
		{
			name: "no_new_privs 1, the last value wins",
			in:   lines("lxc.no_new_privs = 0", "lxc.no_new_privs = 1"),
			want: &spec.Container{NoNewPrivileges: true},
		},
		{
			name: "no_new_privs 0",
			in:   "lxc.no_new_privs = 0\n",
			want: &spec.Container{},
		},

		// lxc.cap.drop / lxc.cap.keep
		{
			name: "cap drop accumulates, accepts numbers, drops duplicates",
			in:   lines("lxc.cap.drop = sys_module mac_admin", "lxc.cap.drop = 21 sys_module\tsys_time"),
			want: &spec.Container{CapDrop: []string{"sys_module", "mac_admin", "sys_admin", "sys_time"}},
		},
		{
			name: "cap drop empty value clears",
			in:   lines("lxc.cap.drop = sys_module", "lxc.cap.drop =", "lxc.cap.drop = checkpoint_restore"),
			want: &spec.Container{CapDrop: []string{"checkpoint_restore"}},
		},
		{
			name: "cap keep and reset",
			in:   lines("lxc.cap.keep = chown kill", "lxc.cap.keep =", "lxc.cap.keep = setuid setgid"),
			want: &spec.Container{CapKeep: []string{"setuid", "setgid"}},
		},
		{
			name: "cap keep none keeps nothing",
			in:   "lxc.cap.keep = none\n",
			want: &spec.Container{CapKeep: []string{"none"}},
		},
		{
			name: "cap keep none forgets earlier entries only",
			in:   lines("lxc.cap.keep = chown", "lxc.cap.keep = none kill"),
			want: &spec.Container{CapKeep: []string{"kill"}},
		},
		{
			name: "cap keep none then empty value resets to unset",
			in:   lines("lxc.cap.keep = none", "lxc.cap.keep ="),
			want: &spec.Container{},
		},
		{
			name:  "cap keep together with drop warns",
			in:    lines("lxc.cap.drop = sys_admin", "lxc.cap.keep = chown", "lxc.cap.drop = sys_time"),
			want:  &spec.Container{CapDrop: []string{"sys_admin", "sys_time"}, CapKeep: []string{"chown"}},
			warns: []string{"line 1: lxc.cap.drop: ignored because lxc.cap.keep is set"},
		},

		// lxc.uts.name
		{
			name: "uts name empty resets",
			in:   lines("lxc.uts.name = a", "lxc.uts.name ="),
			want: &spec.Container{},
		},
		{
			name: "uts name of 64 bytes",
			in:   "lxc.uts.name = " + strings.Repeat("h", 64) + "\n",
			want: &spec.Container{Hostname: strings.Repeat("h", 64)},
		},

		// lxc.namespace.keep
		{
			name: "namespace keep all names, accumulates, no duplicates",
			in:   lines("lxc.namespace.keep = cgroup ipc mnt", "lxc.namespace.keep = net pid time user uts ipc"),
			want: &spec.Container{NamespaceKeep: []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}},
		},
		{
			name: "namespace keep empty value clears",
			in:   lines("lxc.namespace.keep = user net ipc", "lxc.namespace.keep =", "lxc.namespace.keep = user ipc"),
			want: &spec.Container{NamespaceKeep: []string{"user", "ipc"}},
		},

		// lxc.net.*
		{
			name: "net full static configuration, interfaces sorted by index",
			in: lines(
				"lxc.net.1.type = macvlan",
				"lxc.net.1.link = eth0",
				"lxc.net.0.type = veth",
				"lxc.net.0.link = lxcbr0",
				"lxc.net.0.name = eth0",
				"lxc.net.0.hwaddr = 00:16:3E:AA:bb:01",
				"lxc.net.0.ipv4.address = 10.0.3.5/24",
				"lxc.net.0.ipv4.address = 10.0.4.5/16",
				"lxc.net.0.ipv4.address = 10.0.3.5/24",
				"lxc.net.0.ipv4.gateway = 10.0.3.1",
				"lxc.net.0.flags = up",
				"lxc.net.0.mtu = 1500",
			),
			want: &spec.Container{Net: []spec.NetInterface{
				{Index: 0, Type: "veth", Link: "lxcbr0", Name: "eth0", HWAddr: "00:16:3e:aa:bb:01",
					IPv4: []string{"10.0.3.5/24", "10.0.4.5/16"}, Gateway: "10.0.3.1", Flags: "up", MTU: 1500},
				{Index: 1, Type: "macvlan", Link: "eth0"},
			}},
		},
		{
			name: "net random hwaddr octets",
			in:   lines("lxc.net.0.type = veth", "lxc.net.0.hwaddr = 00:16:3e:xx:XX:xx"),
			want: &spec.Container{Net: []spec.NetInterface{{Type: "veth", HWAddr: "00:16:3e:xx:xx:xx"}}},
		},
		{
			name: "net ipv4 address empty value clears, other fields reset",
			in: lines(
				"lxc.net.0.type = veth",
				"lxc.net.0.ipv4.address = 10.0.3.5/24",
				"lxc.net.0.ipv4.address =",
				"lxc.net.0.ipv4.address = 10.0.3.6/24",
				"lxc.net.0.mtu = 1400",
				"lxc.net.0.mtu =",
				"lxc.net.0.link = br0",
				"lxc.net.0.link =",
				"lxc.net.0.ipv4.gateway = 10.0.3.1",
				"lxc.net.0.ipv4.gateway =",
			),
			want: &spec.Container{Net: []spec.NetInterface{{Type: "veth", IPv4: []string{"10.0.3.6/24"}}}},
		},
		{
			name: "net address without prefix gets its class, broadcast ignored",
			in: lines(
				"lxc.net.0.type = veth",
				"lxc.net.0.ipv4.address = 10.1.2.3",
				"lxc.net.0.ipv4.address = 172.16.0.2",
				"lxc.net.0.ipv4.address = 192.168.1.2 192.168.1.255",
			),
			want: &spec.Container{Net: []spec.NetInterface{{Type: "veth", IPv4: []string{"10.1.2.3/8", "172.16.0.2/16", "192.168.1.2/24"}}}},
			warns: []string{
				"line 2: lxc.net.0.ipv4.address: no prefix length, using /8 as LXC does",
				"line 3: lxc.net.0.ipv4.address: no prefix length, using /16 as LXC does",
				"line 4: lxc.net.0.ipv4.address: broadcast address not supported, ignored",
				"line 4: lxc.net.0.ipv4.address: no prefix length, using /24 as LXC does",
			},
		},
		{
			name:  "net gateway auto is ignored",
			in:    lines("lxc.net.0.type = veth", "lxc.net.0.ipv4.gateway = auto"),
			want:  &spec.Container{Net: []spec.NetInterface{{Type: "veth"}}},
			warns: []string{`line 2: lxc.net.0.ipv4.gateway: gateway "auto" is not supported, ignored`},
		},
		{
			name:  "net interface without type is empty",
			in:    "lxc.net.2.link = br0\n",
			want:  &spec.Container{Net: []spec.NetInterface{{Index: 2, Type: "empty", Link: "br0"}}},
			warns: []string{"line 1: lxc.net.2.link: lxc.net.2.type not set, using empty as LXC does"},
		},
		{
			name: "net empty field on a missing interface creates nothing",
			in:   "lxc.net.0.type =\n",
			want: &spec.Container{},
		},
		{
			name: "net reset all and one",
			in: lines(
				"lxc.net.0.type = veth",
				"lxc.net =",
				"lxc.net.1.type = veth",
				"lxc.net.2.type = phys",
				"lxc.net.1 =",
			),
			want: &spec.Container{Net: []spec.NetInterface{{Index: 2, Type: "phys"}}},
		},
		{
			name: "net unsupported and unknown subkeys",
			in: lines(
				"lxc.net.0.type = veth",
				"lxc.net.0.ipv6.address = fd00::2/64",
				"lxc.net.0.veth.pair = vethX",
				"lxc.net.0.l2proxy = 1",
				"lxc.net.0.bogus = 1",
				"lxc.net.0.ipv6.address = fd00::3/64",
			),
			want: &spec.Container{Net: []spec.NetInterface{{Type: "veth"}}},
			warns: []string{
				"line 2: lxc.net.0.ipv6.address: not supported, ignored (also on line 6)",
				"line 3: lxc.net.0.veth.pair: not supported, ignored",
				"line 4: lxc.net.0.l2proxy: not supported, ignored",
				"line 5: lxc.net.0.bogus: unknown key",
			},
		},

		// lxc.cgroup / lxc.cgroup2
		{
			name: "cgroup v1 and v2 settings, later value replaces",
			in: lines(
				"lxc.cgroup.memory.limit_in_bytes = 256M",
				"lxc.cgroup2.memory.max = 268435456",
				"lxc.cgroup.cpuset.cpus = 0-1",
				"lxc.cgroup.memory.limit_in_bytes = 128M",
				"lxc.cgroup2.pids.max = 64",
			),
			want: &spec.Container{Cgroup: []spec.CgroupSetting{
				{Version: 1, Key: "memory.limit_in_bytes", Value: "128M"},
				{Version: 2, Key: "memory.max", Value: "268435456"},
				{Version: 1, Key: "cpuset.cpus", Value: "0-1"},
				{Version: 2, Key: "pids.max", Value: "64"},
			}},
		},
		{
			name: "cgroup empty value removes that setting",
			in:   lines("lxc.cgroup.cpu.shares = 512", "lxc.cgroup2.cpu.shares = 5", "lxc.cgroup.pids.max = 9", "lxc.cgroup.cpu.shares ="),
			want: &spec.Container{Cgroup: []spec.CgroupSetting{
				{Version: 2, Key: "cpu.shares", Value: "5"},
				{Version: 1, Key: "pids.max", Value: "9"},
			}},
		},
		{
			name: "cgroup bare key clears its version and device rules",
			in: lines(
				"lxc.cgroup.pids.max = 9",
				"lxc.cgroup2.pids.max = 10",
				"lxc.cgroup.devices.allow = a",
				"lxc.cgroup =",
				"lxc.cgroup.devices.deny = c 1:3 w",
			),
			want: &spec.Container{
				Cgroup:      []spec.CgroupSetting{{Version: 2, Key: "pids.max", Value: "10"}},
				DevicesDeny: []string{"c 1:3 w"},
			},
		},
		{
			name: "cgroup device rules from both versions accumulate and reset",
			in: lines(
				"lxc.cgroup.devices.deny = a",
				"lxc.cgroup.devices.allow = c 1:3 rwm",
				"lxc.cgroup2.devices.allow = b  *:*   m",
				"lxc.cgroup.devices.allow = c 136:* rw",
				"lxc.cgroup.devices.deny =",
			),
			want: &spec.Container{DevicesAllow: []string{"c 1:3 rwm", "b *:* m", "c 136:* rw"}},
		},
		{
			name: "cgroup placement keys are ignored, names without a dot unknown",
			in:   lines("lxc.cgroup.dir = pv/x", "lxc.cgroup.dir.container = c", "lxc.cgroup.relative = 1", "lxc.cgroup.foo = 1", "lxc.cgroup2.bar = 1"),
			want: &spec.Container{},
			warns: []string{
				"line 1: lxc.cgroup.dir: not supported, ignored",
				"line 2: lxc.cgroup.dir.container: not supported, ignored",
				"line 3: lxc.cgroup.relative: not supported, ignored",
				"line 4: lxc.cgroup.foo: unknown key",
				"line 5: lxc.cgroup2.bar: unknown key",
			},
		},

		// lxc.tty.max / lxc.pty.max
		{
			name: "tty and pty reset",
			in:   lines("lxc.tty.max = 4", "lxc.pty.max = 0", "lxc.tty.max ="),
			want: &spec.Container{},
		},

		// lxc.rootfs.path
		{
			name: "rootfs overlay spelled overlay",
			in:   "lxc.rootfs.path = overlay:/a/lower:/b/upper\n",
			want: &spec.Container{Rootfs: spec.Rootfs{Type: "overlayfs", Lower: "/a/lower", Upper: "/b/upper"}},
		},
		{
			name: "rootfs overlay upper is after the last colon",
			in:   "lxc.rootfs.path = overlayfs:/a:/b:/c\n",
			want: &spec.Container{Rootfs: spec.Rootfs{Type: "overlayfs", Lower: "/a:/b", Upper: "/c"}},
		},
		{
			name: "rootfs dir",
			in:   "lxc.rootfs.path = dir:/var/lib/lxc/c/rootfs\n",
			want: &spec.Container{Rootfs: spec.Rootfs{Type: "dir", Lower: "/var/lib/lxc/c/rootfs"}},
		},
		{
			name: "rootfs plain path, colon inside",
			in:   "lxc.rootfs.path = /var/lib/a:b\n",
			want: &spec.Container{Rootfs: spec.Rootfs{Type: "dir", Lower: "/var/lib/a:b"}},
		},
		{
			name: "rootfs relative path with unknown prefix",
			in:   "lxc.rootfs.path = foo:bar\n",
			want: &spec.Container{Rootfs: spec.Rootfs{Type: "dir", Lower: "foo:bar"}},
		},
		{
			name: "rootfs empty resets",
			in:   lines("lxc.rootfs.path = /r", "lxc.rootfs.path ="),
			want: &spec.Container{},
		},

		// Legacy names.
		{
			name: "legacy aliases",
			in: lines(
				"lxc.utsname = old",
				"lxc.init_cmd = /bin/old run",
				"lxc.init_uid = 7",
				"lxc.init_gid = 8",
				"lxc.rootfs = /old/root",
				"lxc.tty = 2",
				"lxc.pts = 16",
				"lxc.network.0.type = veth",
				"lxc.network.0.ipv4 = 10.0.0.2/24",
				"lxc.loglevel = 3",
				"lxc.utsname = older",
			),
			want: &spec.Container{
				Args: []string{"/bin/old", "run"}, UID: u32(7), GID: u32(8), Hostname: "older",
				Rootfs: spec.Rootfs{Type: "dir", Lower: "/old/root"}, TTYMax: 2, PTYMax: 16,
				Net: []spec.NetInterface{{Type: "veth", IPv4: []string{"10.0.0.2/24"}}},
			},
			warns: []string{
				"line 1: lxc.utsname: deprecated name of lxc.uts.name (also on line 11)",
				"line 2: lxc.init_cmd: deprecated name of lxc.init.cmd",
				"line 3: lxc.init_uid: deprecated name of lxc.init.uid",
				"line 4: lxc.init_gid: deprecated name of lxc.init.gid",
				"line 5: lxc.rootfs: deprecated name of lxc.rootfs.path",
				"line 6: lxc.tty: deprecated name of lxc.tty.max",
				"line 7: lxc.pts: deprecated name of lxc.pty.max",
				"line 8: lxc.network.0.type: deprecated name of lxc.net.0.type",
				"line 9: lxc.network.0.ipv4: deprecated name of lxc.net.0.ipv4.address",
				"line 10: lxc.loglevel: deprecated name of lxc.log.level; not supported, ignored",
			},
		},
		{
			name: "legacy unindexed network: each type starts an interface",
			in: lines(
				"lxc.net.0.type = phys",
				"lxc.network.type = veth",
				"lxc.network.link = br0",
				"lxc.network.ipv4 = 10.0.0.2/24",
				"lxc.network.type = empty",
				"lxc.network.flags = up",
			),
			want: &spec.Container{Net: []spec.NetInterface{
				{Index: 0, Type: "phys"},
				{Index: 1, Type: "veth", Link: "br0", IPv4: []string{"10.0.0.2/24"}},
				{Index: 2, Type: "empty", Flags: "up"},
			}},
			warns: []string{
				"line 2: lxc.network.type: deprecated, use lxc.net.<index>.type (also on line 5)",
				"line 3: lxc.network.link: deprecated, use lxc.net.<index>.link",
				"line 4: lxc.network.ipv4: deprecated, use lxc.net.<index>.ipv4.address",
				"line 6: lxc.network.flags: deprecated, use lxc.net.<index>.flags",
			},
		},
		{
			name: "legacy empty network clears",
			in:   lines("lxc.network.type = veth", "lxc.network =", "lxc.network.type = veth", "lxc.network.type ="),
			want: &spec.Container{},
			warns: []string{
				"line 1: lxc.network.type: deprecated, use lxc.net.<index>.type (also on lines 3, 4)",
				"line 2: lxc.network: deprecated name of lxc.net",
			},
		},

		// Known keys without translation, unknown keys, junk lines.
		{
			name: "ignored keys warn once each",
			in: lines(
				"lxc.tty.dir = lxc",
				"lxc.hook.pre-start = /bin/true",
				"lxc.group = onboot",
				"lxc.ephemeral = 0",
				"lxc.arch = amd64",
				"lxc.autodev = 1",
				"lxc.signal.halt = SIGUSR1",
				"lxc.start.auto = 1",
				"lxc.mount.fstab = /x/fstab",
				"lxc.rootfs.options = idmap=container",
				"lxc.hook.pre-start = /bin/false",
				"lxc.tty.dir = x",
				"lxc.console.logfile = /x",
				"lxc.console.path = none",
				"lxc.pivotdir = x",
				"lxc.keyring.session = 0",
			),
			want: &spec.Container{},
			warns: []string{
				"line 1: lxc.tty.dir: not supported, ignored (also on line 12)",
				"line 2: lxc.hook.pre-start: not supported, ignored (also on line 11)",
				"line 3: lxc.group: not supported, ignored",
				"line 4: lxc.ephemeral: not supported, ignored",
				"line 5: lxc.arch: not supported, ignored",
				"line 6: lxc.autodev: not supported, ignored",
				"line 7: lxc.signal.halt: not supported, ignored",
				"line 8: lxc.start.auto: not supported, ignored",
				"line 9: lxc.mount.fstab: not supported, ignored",
				"line 10: lxc.rootfs.options: not supported, ignored",
				"line 13: lxc.console.logfile: not supported, ignored",
				"line 14: lxc.console.path: not supported, ignored",
				"line 15: lxc.pivotdir: obsolete, ignored",
				"line 16: lxc.keyring.session: not supported, ignored",
			},
		},
		{
			name: "unknown keys listed once, with their lines",
			in: lines(
				"lxc.bogus = 1",
				"lxc.uts.name = x",
				"lxc.bogus = 2",
				"LXC.UTS.NAME = y",
				"lxc.bogus = 3",
				"foo = bar",
				"lxc.console = ",
			),
			want: &spec.Container{Hostname: "x"},
			warns: []string{
				"line 1: lxc.bogus: unknown key (also on lines 3, 5)",
				"line 4: LXC.UTS.NAME: unknown key",
				"line 6: foo: unknown key",
				"line 7: lxc.console: deprecated name of lxc.console.path; not supported, ignored",
			},
		},
		{
			name:  "many repeats are summarised",
			in:    strings.Repeat("lxc.bogus = 1\n", 13),
			want:  &spec.Container{},
			warns: []string{"line 1: lxc.bogus: unknown key (also on lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 2 more)"},
		},
		{
			name:  "long junk line is shortened in its warning",
			in:    strings.Repeat("j", 70) + "\n",
			want:  &spec.Container{},
			warns: []string{"line 1: " + strings.Repeat("j", 64) + `...: not a "key = value" line, ignored`},
		},
		{
			name: "net hwaddr empty value resets",
			in:   lines("lxc.net.0.type = veth", "lxc.net.0.hwaddr = 00:16:3e:00:00:01", "lxc.net.0.hwaddr ="),
			want: &spec.Container{Net: []spec.NetInterface{{Type: "veth"}}},
		},
		{
			name:  "non-lxc line without = is ignored like LXC does",
			in:    lines("some junk", "lxc.uts.name = x"),
			want:  &spec.Container{Hostname: "x"},
			warns: []string{`line 1: some junk: not a "key = value" line, ignored`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warns, err := Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("spec:\n got %+v\nwant %+v", *got, *tt.want)
			}
			var gotWarns []string
			for _, w := range warns {
				gotWarns = append(gotWarns, w.String())
			}
			if !reflect.DeepEqual(gotWarns, tt.warns) {
				t.Errorf("warnings:\n got %q\nwant %q", gotWarns, tt.warns)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		key  string
		want string // part of the message after "line N: key: "
	}{
		{"missing equals", "lxc.uts.name = a\nlxc.uts.name box\n", 2, "lxc.uts.name box", `missing "="`},
		{"missing key", "  = value\n", 1, "", "missing key"},
		{"NUL byte", "lxc.uts.name = a\x00b\n", 1, "lxc.uts.name", "NUL"},

		{"init.cmd unterminated double quote", `lxc.init.cmd = /bin/sh "-c" "echo` + "\n", 1, "lxc.init.cmd", "unterminated double quote at byte 14"},
		{"init.cmd unterminated single quote", `lxc.init.cmd = /bin/sh 'x` + "\n", 1, "lxc.init.cmd", "unterminated single quote"},
		{"init.cmd trailing backslash", `lxc.init.cmd = /bin/sh \` + "\n", 1, "lxc.init.cmd", "lone backslash"},
		{"init.cmd empty program", `lxc.init.cmd = "" x` + "\n", 1, "lxc.init.cmd", "empty program name"},
		{"legacy init_cmd error names the written key", `lxc.init_cmd = "x` + "\n", 1, "lxc.init_cmd", "unterminated double quote"},

		{"init.cwd relative", "lxc.init.cwd = srv\n", 1, "lxc.init.cwd", "absolute path"},
		{"init.uid negative", "lxc.init.uid = -1\n", 1, "lxc.init.uid", `non-negative integer below 2^32, got "-1"`},
		{"init.uid word", "lxc.init.uid = root\n", 1, "lxc.init.uid", `got "root"`},
		{"init.uid too big", "lxc.init.uid = 4294967296\n", 1, "lxc.init.uid", "below 2^32"},
		{"init.gid plus sign", "lxc.init.gid = +5\n", 1, "lxc.init.gid", `got "+5"`},
		{"init.gid hex", "lxc.init.gid = 0x10\n", 1, "lxc.init.gid", `got "0x10"`},

		{"environment missing name", "lxc.environment = =x\n", 1, "lxc.environment", "missing variable name"},
		{"environment blank in name", "lxc.environment = A B=1\n", 1, "lxc.environment", `"A B" contains a blank`},

		{"mount entry three fields", "lxc.mount.entry = /a b none\n", 1, "lxc.mount.entry", "got 3 field(s)"},
		{"mount entry seven fields", "lxc.mount.entry = /a b none bind 0 0 x\n", 1, "lxc.mount.entry", "got 7 field(s)"},
		{"mount entry dump not a number", "lxc.mount.entry = /a b none bind x\n", 1, "lxc.mount.entry", `got "x"`},
		{"mount entry target escapes", "lxc.mount.entry = /a ../etc none bind\n", 1, "lxc.mount.entry", "leaves the container root"},
		{"mount entry deep target escapes", "lxc.mount.entry = /a /x/../../etc none bind\n", 1, "lxc.mount.entry", "leaves the container root"},
		{"mount entry escaped NUL", `lxc.mount.entry = /a\000 b none bind` + "\n", 1, "lxc.mount.entry", "source: "},

		{"mount auto unknown", "lxc.mount.auto = proc dev\n", 1, "lxc.mount.auto", `unknown automatic mount "dev"`},
		{"mount auto bad option", "lxc.mount.auto = proc:ro\n", 1, "lxc.mount.auto", `unknown option "ro" for automatic mount "proc"`},
		{"mount auto empty option", "lxc.mount.auto = sys:\n", 1, "lxc.mount.auto", "empty option"},
		{"mount auto shmounts without path", "lxc.mount.auto = shmounts\n", 1, "lxc.mount.auto", "needs a host path"},

		{"idmap three fields", "lxc.idmap = u 0 100000\n", 1, "lxc.idmap", `want "u|g|b container-id host-id count"`},
		{"idmap not a number", "lxc.idmap = u 0 x 1\n", 1, "lxc.idmap", `got "x"`},
		{"idmap negative", "lxc.idmap = u -1 0 1\n", 1, "lxc.idmap", `got "-1"`},
		{"idmap count 0", "lxc.idmap = g 0 100000 0\n", 1, "lxc.idmap", "count is 0"},
		{"idmap past 2^32", "lxc.idmap = u 4294967295 0 2\n", 1, "lxc.idmap", "goes past 2^32"},
		{"idmap bad type", "lxc.idmap = x 0 100000 1\n", 1, "lxc.idmap", `type "x" is not u, g or b`},

		{"cap drop unknown", "lxc.cap.drop = sys_admin sys_foo\n", 1, "lxc.cap.drop", `unknown capability "sys_foo"`},
		{"cap drop upper case", "lxc.cap.drop = CAP_SYS_ADMIN\n", 1, "lxc.cap.drop", `LXC spells it "sys_admin"`},
		{"cap drop none", "lxc.cap.drop = none\n", 1, "lxc.cap.drop", `"none" is only meaningful in lxc.cap.keep`},
		{"cap drop number out of range", "lxc.cap.drop = 41\n", 1, "lxc.cap.drop", `unknown capability "41"`},
		{"cap keep unknown", "lxc.cap.keep = chown all\n", 1, "lxc.cap.keep", `unknown capability "all"`},

		{"uts name too long", "lxc.uts.name = " + strings.Repeat("h", 65) + "\n", 1, "lxc.uts.name", "65 bytes"},

		{"namespace keep unknown", "lxc.namespace.keep = user mount\n", 1, "lxc.namespace.keep", `unknown namespace "mount"`},

		{"net index not a number", "lxc.net.a.type = veth\n", 1, "lxc.net.a.type", `index "a"`},
		{"net index negative", "lxc.net.-1.type = veth\n", 1, "lxc.net.-1.type", `index "-1"`},
		{"net index too big", "lxc.net.99999999999999999999.type = veth\n", 1, "lxc.net.99999999999999999999.type", "above 65535"},
		{"net type unknown", "lxc.net.0.type = bridge\n", 1, "lxc.net.0.type", `unknown interface type "bridge"`},
		{"net link too long", "lxc.net.0.link = averyveryverylongname\n", 1, "lxc.net.0.link", "longer than 15 bytes"},
		{"net name with slash", "lxc.net.0.name = eth/0\n", 1, "lxc.net.0.name", "contains '/'"},
		{"net name dot", "lxc.net.0.name = ..\n", 1, "lxc.net.0.name", "not allowed"},
		{"net hwaddr short", "lxc.net.0.hwaddr = 00:16:3e:00:00\n", 1, "lxc.net.0.hwaddr", "want a MAC address"},
		{"net hwaddr bad digit", "lxc.net.0.hwaddr = 00:16:3e:00:00:zz\n", 1, "lxc.net.0.hwaddr", "want a MAC address"},
		{"net hwaddr dashes", "lxc.net.0.hwaddr = 00-16-3e-00-00-01\n", 1, "lxc.net.0.hwaddr", "want a MAC address"},
		{"net hwaddr multicast", "lxc.net.0.hwaddr = 01:00:5e:00:00:01\n", 1, "lxc.net.0.hwaddr", "multicast"},
		{"net ipv4 garbage", "lxc.net.0.ipv4.address = 10.0.0/24\n", 1, "lxc.net.0.ipv4.address", "invalid IPv4 address"},
		{"net ipv4 is v6", "lxc.net.0.ipv4.address = fd00::1/64\n", 1, "lxc.net.0.ipv4.address", "not an IPv4 address"},
		{"net ipv4 bare v6", "lxc.net.0.ipv4.address = ::1\n", 1, "lxc.net.0.ipv4.address", "not an IPv4 address"},
		{"net ipv4 prefix too long", "lxc.net.0.ipv4.address = 10.0.0.1/33\n", 1, "lxc.net.0.ipv4.address", "invalid IPv4 address"},
		{"net ipv4 too many fields", "lxc.net.0.ipv4.address = 10.0.0.1/24 10.0.0.255 x\n", 1, "lxc.net.0.ipv4.address", "ADDRESS/PREFIX [BROADCAST]"},
		{"net ipv4 bad broadcast", "lxc.net.0.ipv4.address = 10.0.0.1/24 nope\n", 1, "lxc.net.0.ipv4.address", "broadcast: invalid IPv4 address"},
		{"net ipv4 classless needs prefix", "lxc.net.0.ipv4.address = 224.0.0.1\n", 1, "lxc.net.0.ipv4.address", "needs a prefix length"},
		{"net gateway garbage", "lxc.net.0.ipv4.gateway = gw\n", 1, "lxc.net.0.ipv4.gateway", "invalid IPv4 address"},
		{"net gateway v6", "lxc.net.0.ipv4.gateway = fe80::1\n", 1, "lxc.net.0.ipv4.gateway", "not an IPv4 address"},
		{"net flags down", "lxc.net.0.flags = down\n", 1, "lxc.net.0.flags", `want "up"`},
		{"net mtu zero", "lxc.net.0.mtu = 0\n", 1, "lxc.net.0.mtu", "between 1 and 65535"},
		{"net mtu word", "lxc.net.0.mtu = big\n", 1, "lxc.net.0.mtu", `got "big"`},
		{"net bare key with value", "lxc.net = x\n", 1, "lxc.net", "only an empty value"},
		{"net index key with value", "lxc.net.0 = x\n", 1, "lxc.net.0", "only an empty value"},
		{"legacy network key before type", "lxc.network.link = br0\n", 1, "lxc.network.link", "before any lxc.network.type"},
		{"legacy indexed network bad value", "lxc.network.3.type = bogus\n", 1, "lxc.network.3.type", "unknown interface type"},
		{"no_new_privs word", "lxc.no_new_privs = yes\n", 1, "lxc.no_new_privs", "must be 0 or 1"},

		{"cgroup file with slash", "lxc.cgroup.memory/../x.y = 1\n", 1, "lxc.cgroup.memory/../x.y", "not a cgroup file name"},
		{"cgroup file with dot-dot", "lxc.cgroup2.a..b = 1\n", 1, "lxc.cgroup2.a..b", "not a cgroup file name"},
		{"cgroup trailing dot", "lxc.cgroup.memory. = 1\n", 1, "lxc.cgroup.memory.", "not a cgroup file name"},
		{"cgroup bare key with value", "lxc.cgroup2 = x\n", 1, "lxc.cgroup2", "only an empty value"},
		{"device rule bad type", "lxc.cgroup.devices.allow = x 1:3 rwm\n", 1, "lxc.cgroup.devices.allow", "type must be a, b or c"},
		{"device rule lone c", "lxc.cgroup.devices.allow = c\n", 1, "lxc.cgroup.devices.allow", `only "a" may stand alone`},
		{"device rule two fields", "lxc.cgroup.devices.deny = c 1:3\n", 1, "lxc.cgroup.devices.deny", "wrong number of fields"},
		{"device rule bad numbers", "lxc.cgroup2.devices.allow = c 1-3 rwm\n", 1, "lxc.cgroup2.devices.allow", "MAJOR:MINOR"},
		{"device rule bad minor", "lxc.cgroup.devices.allow = c 1:x rwm\n", 1, "lxc.cgroup.devices.allow", "MAJOR:MINOR"},
		{"device rule bad access", "lxc.cgroup.devices.allow = c 1:3 rwx\n", 1, "lxc.cgroup.devices.allow", "r, w and m"},
		{"device rule repeated access", "lxc.cgroup.devices.allow = c 1:3 rr\n", 1, "lxc.cgroup.devices.allow", "r, w and m"},

		{"tty max negative", "lxc.tty.max = -1\n", 1, "lxc.tty.max", `got "-1"`},
		{"pty max word", "lxc.pty.max = many\n", 1, "lxc.pty.max", `got "many"`},
		{"legacy tty error names the written key", "lxc.tty = x\n", 1, "lxc.tty", `got "x"`},

		{"rootfs overlay missing upper", "lxc.rootfs.path = overlayfs:/lower\n", 1, "lxc.rootfs.path", "LOWER:UPPER"},
		{"rootfs overlay empty upper", "lxc.rootfs.path = overlayfs:/lower:\n", 1, "lxc.rootfs.path", "LOWER:UPPER"},
		{"rootfs overlay empty lower", "lxc.rootfs.path = overlay::/upper\n", 1, "lxc.rootfs.path", "LOWER:UPPER"},
		{"rootfs dir empty", "lxc.rootfs.path = dir:\n", 1, "lxc.rootfs.path", "dir:PATH"},
		{"rootfs unsupported backend", "lxc.rootfs.path = btrfs:/x\n", 1, "lxc.rootfs.path", `backend "btrfs" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warns, err := Parse(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v, warnings %v", got, warns)
			}
			if got != nil || warns != nil {
				t.Errorf("Parse returned a spec or warnings with an error: %+v %v", got, warns)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SyntaxError", err)
			}
			if se.Unwrap() == nil {
				t.Error("SyntaxError wraps no error")
			}
			if se.Line != tt.line || se.Key != tt.key {
				t.Errorf("SyntaxError at line %d key %q, want line %d key %q", se.Line, se.Key, tt.line, tt.key)
			}
			prefix := "line " + strconv.Itoa(tt.line) + ": "
			if tt.key != "" {
				prefix += tt.key + ": "
			}
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q, want prefix %q containing %q", msg, prefix, tt.want)
			}
		})
	}
}

func TestParseReportsEveryBadLine(t *testing.T) {
	in := lines("lxc.init.uid = x", "lxc.uts.name = ok", "lxc.cap.drop = nope", "lxc.bogus = 1")
	_, _, err := Parse(strings.NewReader(in))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := "line 1: lxc.init.uid: want a non-negative integer below 2^32, got \"x\"\n" +
		"line 3: lxc.cap.drop: unknown capability \"nope\""
	if err.Error() != want {
		t.Errorf("error:\n got %q\nwant %q", err.Error(), want)
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := Parse(&errAfter{data: []byte("lxc.uts.name = x\n"), err: boom})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "read lxc config: ") {
		t.Errorf("err = %v, want wrapped %v", err, boom)
	}
}

// errAfter returns its reader's data, then err instead of io.EOF.
type errAfter struct {
	data []byte
	err  error
}

func (e *errAfter) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestParseOneByteReader(t *testing.T) {
	got, _, err := Parse(iotest.OneByteReader(strings.NewReader(upstreamTemplate)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, upstreamWant()) {
		t.Errorf("got %+v", *got)
	}
}

func TestWarningString(t *testing.T) {
	tests := []struct {
		name string
		in   Warning
		want string
	}{
		{"plain", Warning{Line: 3, Key: "lxc.bogus", Msg: "unknown key"}, "line 3: lxc.bogus: unknown key"},
		{"odd key is quoted", Warning{Line: 1, Key: "a\x01b", Msg: "m"}, `line 1: "a\x01b": m`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
