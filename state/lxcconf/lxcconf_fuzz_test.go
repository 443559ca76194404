package lxcconf

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func FuzzParse(f *testing.F) {
	seeds := []string{
		upstreamTemplate,
		strings.ReplaceAll(upstreamTemplate, "\n", "\r\n"),
		"",
		"\n\n# c\n",
		"\uFEFFlxc.uts.name = x",
		"lxc.init.cmd = /bin/sh \"-c\" \"echo hi; sleep 1\"\n",
		"lxc.init.cmd = \"/bin/sh -c true\"\n",
		"lxc.init.cmd = a\\ b 'c\"d' \"e\\\"f\" \\\n",
		"lxc.init.cmd = \"unterminated\n",
		"lxc.environment = A=1\nlxc.environment =\nlxc.environment = HOME\n",
		"lxc.mount.entry = /a\\040b c\\134 none bind,,ro 0 0\n",
		"lxc.mount.entry = /a ../x none bind\n",
		"lxc.mount.entry = /a\\000 x none bind\n",
		"lxc.mount.auto = proc:mixed sys:ro cgroup:rw:force shmounts:/a:/b\n",
		"lxc.cap.drop = sys_admin 21 CAP_X\nlxc.cap.keep = none chown\n",
		"lxc.namespace.keep = user net ipc\nlxc.namespace.keep =\n",
		"lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.2/24 10.0.0.255\nlxc.net.0.ipv4.address = 10.1.1.1\nlxc.net.0.hwaddr = 00:16:3e:xx:xx:xx\nlxc.net.0.mtu = 1500\nlxc.net.0.flags = up\nlxc.net.0.ipv4.gateway = 10.0.0.1\n",
		"lxc.network.type = veth\nlxc.network.link = br0\nlxc.network.type = empty\nlxc.network =\n",
		"lxc.net.65535.type = veth\nlxc.network.type = veth\n",
		"lxc.cgroup.memory.limit_in_bytes = 1\nlxc.cgroup2.devices.allow = c *:* rwm\nlxc.cgroup =\nlxc.cgroup.dir = x\n",
		"lxc.rootfs.path = overlayfs:/a:/b\nlxc.rootfs.path = dir:/x\nlxc.rootfs.path = zfs:x\n",
		"lxc.utsname = a\nlxc.tty = 1\nlxc.pts = 2\nlxc.init_uid = 3\nlxc.loglevel = 1\nlxc.include = /x\n",
		"lxc.bogus = 1\nlxc.bogus = 2\njunk\n= x\nlxc.nokey\n",
		"lxc.uts.name = a\x00b\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, warns, err := Parse(strings.NewReader(in))
		if err != nil {
			if c != nil || warns != nil {
				t.Fatalf("error %v came with a spec or warnings", err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SyntaxError", err)
			}
			if se.Line < 1 || !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error %q does not name a line", err)
			}
			return
		}
		if c == nil {
			t.Fatal("no error and no spec")
		}
		for _, w := range warns {
			if w.Line < 1 || w.Msg == "" {
				t.Fatalf("bad warning %+v", w)
			}
		}

		// Parsing is a pure function of the text: the same input, even
		// delivered a byte at a time, gives the same result.
		c2, warns2, err2 := Parse(iotest.OneByteReader(strings.NewReader(in)))
		if err2 != nil {
			t.Fatalf("second parse failed: %v", err2)
		}
		if !reflect.DeepEqual(c, c2) || !reflect.DeepEqual(warns, warns2) {
			t.Fatalf("parse not deterministic:\n%+v %v\n%+v %v", c, warns, c2, warns2)
		}

		// What the spec promises its consumers.
		for _, m := range c.Mounts {
			if strings.HasPrefix(m.Target, "/") || m.Target == ".." || strings.HasPrefix(m.Target, "../") {
				t.Fatalf("mount target %q is not inside the root", m.Target)
			}
		}
		if len(c.Args) > 0 && c.Args[0] == "" {
			t.Fatalf("empty program name in %q", c.Args)
		}
		for i := 1; i < len(c.Net); i++ {
			if c.Net[i-1].Index >= c.Net[i].Index {
				t.Fatalf("interfaces not sorted by unique index: %+v", c.Net)
			}
		}
		for _, s := range c.Cgroup {
			if strings.Contains(s.Key, "/") || strings.Contains(s.Key, "..") {
				t.Fatalf("cgroup key %q can leave the cgroup", s.Key)
			}
		}
	})
}

// FuzzParseIncludes feeds a config and the files of its revision that it
// may include (the input's sections, split at "\n===\n", are the config,
// then a.conf, b.conf and c.conf): ParseIncludes must never panic, must
// report errors as *SyntaxError on a line, and must never read more of
// the included files than its budget allows, however they include each
// other (a budget of 64 KiB here, maxIncludedTotal's runs being slow).
func FuzzParseIncludes(f *testing.F) {
	f.Add("lxc.include = a.conf\nlxc.tty.max = 1\n===\nlxc.include = b.conf\n===\nlxc.environment = A=1\n===\n")
	f.Add("lxc.include = a.conf\n===\nlxc.include = a.conf\n===\n===\n")
	f.Add(strings.Repeat("lxc.include = a.conf\n", 20) + "===\n" + strings.Repeat("lxc.include = b.conf\n", 20) +
		"===\n" + strings.Repeat("lxc.include = c.conf\n", 20) + "===\n" + strings.Repeat("lxc.mount.entry = /a b none bind 0 0\n", 20))
	f.Add("lxc.seccomp.profile = a.conf\nlxc.seccomp.profile = a.conf\n===\n2\ndenylist\nmount errno 1\n===\n===\n")
	f.Fuzz(func(t *testing.T, in string) {
		parts := strings.SplitN(in, "\n===\n", 4)
		files := map[string]string{}
		for i, name := range []string{"a.conf", "b.conf", "c.conf"} {
			if i+1 < len(parts) {
				files[name] = parts[i+1]
			}
		}
		read := 0
		const budget = 64 << 10
		c, _, err := parseIncludes(strings.NewReader(parts[0]), countingOpener(files, &read), budget)
		if max := budget + bufSlack; read > max {
			t.Fatalf("read %d bytes of included files, more than %d", read, max)
		}
		if err != nil {
			if c != nil {
				t.Fatalf("error %v came with a spec", err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 1 {
				t.Fatalf("error %v does not name a line", err)
			}
			return
		}
		if c == nil {
			t.Fatal("no error and no spec")
		}
	})
}
