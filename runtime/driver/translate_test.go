package driver

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/seccomp"
	"github.com/pantavisor/pv/spec"
)

func u32(v uint32) *uint32 { return &v }

// upstreamTemplate is what pvr writes for a container, in spec form.
func upstreamTemplate() *spec.Container {
	return &spec.Container{
		Args:          []string{"/usr/sbin/nginx", "-g", "daemon off;"},
		Cwd:           "/srv",
		Env:           []string{"A=1", "PATH=/usr/bin:/bin", "B=2", "A=3"},
		MountAuto:     []string{"proc", "sys:rw", "cgroup"},
		NamespaceKeep: []string{"user", "net", "ipc"},
		DevicesAllow:  []string{"a"},
		TTYMax:        8,
		PTYMax:        1024,
		Mounts: []spec.Mount{
			{Source: "/etc/resolv.conf", Target: "etc/resolv.conf", FSType: "none", Options: []string{"bind", "ro", "create=file"}},
			{Source: "tmpfs", Target: "run", FSType: "tmpfs", Options: []string{"rw", "nodev", "create=dir", "mode=0755"}},
		},
	}
}

func nsTypes(ns configs.Namespaces) []configs.NamespaceType {
	var out []configs.NamespaceType
	for _, n := range ns {
		out = append(out, n.Type)
	}
	return out
}

func TestTranslateNamespaces(t *testing.T) {
	all := []configs.NamespaceType{configs.NEWNS, configs.NEWUTS, configs.NEWIPC, configs.NEWPID, configs.NEWNET}
	withCgroup := append(slices.Clone(all), configs.NEWCGROUP)
	tests := []struct {
		name     string
		keep     []string
		cgroupns bool // the kernel has cgroup namespaces
		want     []configs.NamespaceType
		hostname string
		loopback bool
		err      bool
	}{
		{"default", nil, false, all, "web", true, false},
		{"default with cgroupns", nil, true, withCgroup, "web", true, false},
		{"upstream template", []string{"user", "net", "ipc"}, true, []configs.NamespaceType{configs.NEWNS, configs.NEWUTS, configs.NEWPID, configs.NEWCGROUP}, "web", false, false},
		{"upstream template, old kernel", []string{"user", "net", "ipc"}, false, []configs.NamespaceType{configs.NEWNS, configs.NEWUTS, configs.NEWPID}, "web", false, false},
		{"ipam pool", []string{"user", "ipc"}, true, []configs.NamespaceType{configs.NEWNS, configs.NEWUTS, configs.NEWPID, configs.NEWNET, configs.NEWCGROUP}, "web", true, false},
		{"keep uts", []string{"uts"}, false, []configs.NamespaceType{configs.NEWNS, configs.NEWIPC, configs.NEWPID, configs.NEWNET}, "", true, false},
		{"keep pid cgroup time", []string{"pid", "cgroup", "time"}, true, []configs.NamespaceType{configs.NEWNS, configs.NEWUTS, configs.NEWIPC, configs.NEWNET}, "web", true, false},
		{"keep mnt", []string{"mnt"}, true, nil, "", false, true},
		{"unknown", []string{"bogus"}, true, nil, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Translate(Input{Name: "web", Rootfs: "/r", Spec: &spec.Container{NamespaceKeep: tt.keep}, CgroupNamespaces: tt.cgroupns})
			if tt.err {
				if !errors.Is(err, ErrInvalidSpec) {
					t.Fatalf("err = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := nsTypes(tr.Config.Namespaces); !slices.Equal(got, tt.want) {
				t.Errorf("namespaces = %v, want %v", got, tt.want)
			}
			if tr.Config.Hostname != tt.hostname {
				t.Errorf("hostname = %q, want %q", tr.Config.Hostname, tt.hostname)
			}
			if got := len(tr.Config.Networks) == 1 && tr.Config.Networks[0].Type == "loopback"; got != tt.loopback {
				t.Errorf("loopback = %v, want %v", got, tt.loopback)
			}
		})
	}
}

func TestTranslateCapabilities(t *testing.T) {
	tests := []struct {
		name       string
		drop, keep []string
		has, lacks []string
		count      int // 0 = don't check
		err        bool
	}{
		{"all by default", nil, nil, []string{"CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_CHOWN"}, nil, len(knownCaps), false},
		{"drop", []string{"net_raw", "sys_module"}, nil, []string{"CAP_SYS_ADMIN"}, []string{"CAP_NET_RAW", "CAP_SYS_MODULE"}, len(knownCaps) - 2, false},
		{"drop with prefix and case", []string{"CAP_NET_RAW"}, nil, nil, []string{"CAP_NET_RAW"}, len(knownCaps) - 1, false},
		{"keep wins", []string{"chown"}, []string{"chown", "kill"}, []string{"CAP_CHOWN", "CAP_KILL"}, []string{"CAP_SYS_ADMIN"}, 2, false},
		{"keep none", nil, []string{"none"}, nil, []string{"CAP_CHOWN"}, -1, false},
		{"unknown drop", []string{"fly"}, nil, nil, nil, 0, true},
		{"unknown keep", nil, []string{"fly"}, nil, nil, 0, true},
	}
	bounded := []string{"chown", "kill", "net_raw"}
	tr, err := Translate(Input{Name: "c", Rootfs: "/r", Bounding: bounded, Spec: &spec.Container{CapDrop: []string{"kill"}}})
	if err != nil || !slices.Equal(tr.Config.Capabilities.Bounding, []string{"CAP_CHOWN", "CAP_NET_RAW"}) {
		t.Errorf("default within bounding set = %v, %v", tr, err)
	}
	_, err = Translate(Input{Name: "c", Rootfs: "/r", Bounding: bounded, Spec: &spec.Container{CapKeep: []string{"sys_admin"}}})
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "bounding") {
		t.Errorf("keep outside bounding set: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{CapDrop: tt.drop, CapKeep: tt.keep}})
			if tt.err {
				if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "fly") {
					t.Fatalf("err = %v, want ErrInvalidSpec naming the capability", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := tr.Config.Capabilities
			for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted} {
				for _, h := range tt.has {
					if !slices.Contains(set, h) {
						t.Errorf("missing %s", h)
					}
				}
				for _, l := range tt.lacks {
					if slices.Contains(set, l) {
						t.Errorf("has %s", l)
					}
				}
				if tt.count > 0 && len(set) != tt.count {
					t.Errorf("len = %d, want %d", len(set), tt.count)
				}
				if tt.count < 0 && len(set) != 0 {
					t.Errorf("len = %d, want 0", len(set))
				}
			}
			if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
				t.Errorf("inheritable/ambient not empty: %v %v", c.Inheritable, c.Ambient)
			}
		})
	}
}

// A CPU weight asked in the other cgroup version's terms is given in the
// host's: the cgroup library writes CpuShares on v1 and CpuWeight on v2
// only. Before, each was taken and then written nowhere on the other.
func TestCPUWeightInTheHostsTerms(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v2      bool
		setting spec.CgroupSetting
		shares  uint64
		weight  uint64
	}{
		{"shares on v2", true, spec.CgroupSetting{Version: 1, Key: "cpu.shares", Value: "1024"}, 1024, 100},
		{"weight on v1", false, spec.CgroupSetting{Version: 2, Key: "cpu.weight", Value: "50"}, 512, 50},
		{"shares on v1", false, spec.CgroupSetting{Version: 1, Key: "cpu.shares", Value: "512"}, 512, 0},
		{"weight on v2", true, spec.CgroupSetting{Version: 2, Key: "cpu.weight", Value: "50"}, 0, 50},
	} {
		tr, err := Translate(Input{Name: "c", Rootfs: "/r", CgroupParent: "pv", CgroupV2: tc.v2,
			Spec: &spec.Container{Cgroup: []spec.CgroupSetting{tc.setting}}})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r := tr.Config.Cgroups.Resources; r.CpuShares != tc.shares || r.CpuWeight != tc.weight {
			t.Errorf("%s: shares %d weight %d, want %d %d", tc.name, r.CpuShares, r.CpuWeight, tc.shares, tc.weight)
		}
	}
}

func TestTranslateCgroup(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name     string
		settings []spec.CgroupSetting
		check    func(*cgroups.Resources) bool
		errHas   []string
	}{
		{"memory", []spec.CgroupSetting{{Version: 1, Key: "memory.limit_in_bytes", Value: "67108864"}}, func(r *cgroups.Resources) bool { return r.Memory == 64<<20 }, nil},
		{"memory suffix", []spec.CgroupSetting{{Version: 1, Key: "memory.limit_in_bytes", Value: "64M"}}, func(r *cgroups.Resources) bool { return r.Memory == 64<<20 }, nil},
		{"memory v2", []spec.CgroupSetting{{Version: 2, Key: "memory.max", Value: "1G"}}, func(r *cgroups.Resources) bool { return r.Memory == 1<<30 }, nil},
		{"memory unlimited", []spec.CgroupSetting{{Version: 1, Key: "memory.limit_in_bytes", Value: "-1"}}, func(r *cgroups.Resources) bool { return r.Memory == -1 }, nil},
		{"pids", []spec.CgroupSetting{{Version: 1, Key: "pids.max", Value: "100"}}, func(r *cgroups.Resources) bool { return *r.PidsLimit == *i64(100) }, nil},
		{"pids max", []spec.CgroupSetting{{Version: 1, Key: "pids.max", Value: "max"}}, func(r *cgroups.Resources) bool { return *r.PidsLimit == -1 }, nil},
		{"cpu shares", []spec.CgroupSetting{{Version: 1, Key: "cpu.shares", Value: "512"}}, func(r *cgroups.Resources) bool { return r.CpuShares == 512 }, nil},
		{"cpu.max", []spec.CgroupSetting{{Version: 2, Key: "cpu.max", Value: "50000 100000"}}, func(r *cgroups.Resources) bool { return r.CpuQuota == 50000 && r.CpuPeriod == 100000 }, nil},
		{"cpuset", []spec.CgroupSetting{{Version: 1, Key: "cpuset.cpus", Value: "0-1"}}, func(r *cgroups.Resources) bool { return r.CpusetCpus == "0-1" }, nil},
		{"bad value", []spec.CgroupSetting{{Version: 1, Key: "cpu.shares", Value: "lots"}}, nil, []string{"cpu.shares", "lots"}},
		{"unknown listed", []spec.CgroupSetting{{Version: 1, Key: "net_cls.classid", Value: "1"}, {Version: 2, Key: "io.max", Value: "8:0 rbps=1"}, {Version: 1, Key: "cpu.shares", Value: "2"}}, nil, []string{"cgroup.net_cls.classid", "cgroup2.io.max"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Translate(Input{Name: "c", Rootfs: "/r", CgroupParent: "pv", Spec: &spec.Container{Cgroup: tt.settings}})
			if tt.errHas != nil {
				if !errors.Is(err, ErrInvalidSpec) {
					t.Fatalf("err = %v, want ErrInvalidSpec", err)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cg := tr.Config.Cgroups; cg.Name != "c" || cg.Parent != "pv" {
				t.Errorf("cgroup name/parent = %q/%q", cg.Name, cg.Parent)
			}
			if !tt.check(tr.Config.Cgroups.Resources) {
				t.Errorf("resources = %+v", tr.Config.Cgroups.Resources)
			}
		})
	}
}

func TestTranslateDevices(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny []string
		first       devices.Rule
		contains    []devices.Rule
		err         bool
	}{
		{"allow all", []string{"a"}, nil,
			devices.Rule{Type: 'a', Major: -1, Minor: -1, Permissions: "rwm", Allow: true}, nil, false},
		{"allow all deny one", []string{"a"}, []string{"c 1:3 w"},
			devices.Rule{Type: 'a', Major: -1, Minor: -1, Permissions: "rwm", Allow: true},
			[]devices.Rule{{Type: 'c', Major: 1, Minor: 3, Permissions: "w", Allow: false}}, false},
		{"default plus one", []string{"c 10:200 rwm", "b *:* m"}, nil,
			devices.Rule{Type: 'a', Major: -1, Minor: -1, Permissions: "rwm", Allow: false},
			[]devices.Rule{
				{Type: 'c', Major: 1, Minor: 3, Permissions: "rwm", Allow: true},
				{Type: 'c', Major: 10, Minor: 200, Permissions: "rwm", Allow: true},
				{Type: 'b', Major: -1, Minor: -1, Permissions: "m", Allow: true},
			}, false},
		{"bad", []string{"x 1:2"}, nil, devices.Rule{}, nil, true},
		{"bad access", []string{"c 1:2 rx"}, nil, devices.Rule{}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{DevicesAllow: tt.allow, DevicesDeny: tt.deny}})
			if tt.err {
				if !errors.Is(err, ErrInvalidSpec) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rules := tr.Config.Cgroups.Resources.Devices
			if *rules[0] != tt.first {
				t.Errorf("first rule = %+v, want %+v", *rules[0], tt.first)
			}
			for _, want := range tt.contains {
				if !slices.ContainsFunc(rules, func(r *devices.Rule) bool { return *r == want }) {
					t.Errorf("missing rule %+v", want)
				}
			}
			if len(tr.Config.Devices) == 0 {
				t.Errorf("no device nodes")
			}
		})
	}
}

func TestTranslateProcessAndEnv(t *testing.T) {
	tr, err := Translate(Input{Name: "web", Rootfs: "/r", Spec: upstreamTemplate()})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/sbin/nginx", "-g", "daemon off;"}; !slices.Equal(tr.Args, want) {
		t.Errorf("args = %q", tr.Args)
	}
	if want := []string{"PATH=/usr/bin:/bin", "container=lxc", "A=3", "B=2"}; !slices.Equal(tr.Env, want) {
		t.Errorf("env = %q, want %q", tr.Env, want)
	}
	if tr.Cwd != "/srv" || tr.UID != 0 || tr.GID != 0 {
		t.Errorf("cwd %q uid %d gid %d", tr.Cwd, tr.UID, tr.GID)
	}

	tr, err = Translate(Input{Name: "x", Rootfs: "/r", Spec: &spec.Container{UID: u32(1000), GID: u32(100)}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Args, []string{"/sbin/init"}) || tr.Cwd != "/" || tr.UID != 1000 || tr.GID != 100 {
		t.Errorf("defaults: args %q cwd %q uid %d gid %d", tr.Args, tr.Cwd, tr.UID, tr.GID)
	}
	if !slices.Equal(tr.Env, []string{"PATH=" + DefaultPath, "container=lxc"}) {
		t.Errorf("default env = %q", tr.Env)
	}
	if _, err := Translate(Input{Name: "x", Rootfs: "/r", Spec: &spec.Container{Cwd: "srv"}}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("relative cwd: err = %v", err)
	}
	if _, err := Translate(Input{Name: "x", Rootfs: "r", Spec: &spec.Container{}}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("relative rootfs: err = %v", err)
	}
}

func findMount(ms []*configs.Mount, dest string) *configs.Mount {
	for _, m := range ms {
		if m.Destination == dest {
			return m
		}
	}
	return nil
}

// TestTranslateCgroupAutomount: as LXC, lxc.mount.auto cgroup is left to
// a container in its own cgroup namespace that keeps CAP_SYS_ADMIN (it
// can mount its cgroups itself), unless :force or a cgroup v2 only host.
func TestTranslateCgroupAutomount(t *testing.T) {
	tests := []struct {
		name     string
		auto     string
		keep     []string // lxc.namespace.keep
		drop     []string // lxc.cap.drop
		cgroupns bool     // the kernel has cgroup namespaces
		v2       bool     // cgroup v2 only host
		want     int      // -1 not mounted, else flags & MS_RDONLY
	}{
		{"own cgroupns, sys_admin kept", "cgroup", nil, nil, true, false, -1},
		{"own cgroupns, rw asked", "cgroup:rw", nil, []string{"net_raw"}, true, false, -1},
		{"no cgroupns in the kernel", "cgroup", nil, nil, false, false, unix.MS_RDONLY},
		{"host cgroup namespace kept", "cgroup", []string{"cgroup"}, nil, true, false, unix.MS_RDONLY},
		{"sys_admin dropped", "cgroup", nil, []string{"sys_admin"}, true, false, unix.MS_RDONLY},
		{"force", "cgroup:force", nil, nil, true, false, unix.MS_RDONLY},
		{"rw force", "cgroup:rw:force", nil, nil, true, false, 0},
		{"full mixed force", "cgroup-full:mixed:force", nil, nil, true, false, unix.MS_RDONLY},
		{"cgroup v2 only host", "cgroup", nil, nil, true, true, unix.MS_RDONLY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Translate(Input{Name: "c", Rootfs: "/r", CgroupNamespaces: tt.cgroupns, CgroupV2: tt.v2,
				Spec: &spec.Container{MountAuto: []string{"sys", tt.auto}, NamespaceKeep: tt.keep, CapDrop: tt.drop}})
			if err != nil {
				t.Fatal(err)
			}
			m := findMount(tr.Config.Mounts, "/sys/fs/cgroup")
			switch {
			case tt.want < 0 && m != nil:
				t.Errorf("/sys/fs/cgroup mounted")
			case tt.want >= 0 && m == nil:
				t.Errorf("/sys/fs/cgroup not mounted")
			case m != nil && m.Flags&unix.MS_RDONLY != tt.want:
				t.Errorf("flags %#x, want ro bit %#x", m.Flags, tt.want)
			}
		})
	}
	if _, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{MountAuto: []string{"proc:force"}}}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf(":force on proc: err = %v, want ErrInvalidSpec", err)
	}
}

func TestTranslateMountAuto(t *testing.T) {
	tests := []struct {
		name       string
		auto, keep []string
		sys        int // -1 absent, else flags & MS_RDONLY
		cgroup     int
		roProc     bool
		mqueue     bool
		err        bool
	}{
		{"upstream", []string{"proc", "sys:rw", "cgroup"}, []string{"ipc"}, 0, unix.MS_RDONLY, true, false, false},
		{"nothing", nil, nil, -1, -1, true, true, false},
		{"proc rw sys ro", []string{"proc:rw", "sys:ro"}, nil, unix.MS_RDONLY, -1, false, true, false},
		{"cgroup rw", []string{"cgroup:rw", "sys"}, nil, unix.MS_RDONLY, 0, true, true, false},
		{"unknown", []string{"shmounts:/x"}, nil, 0, 0, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{MountAuto: tt.auto, NamespaceKeep: tt.keep}})
			if tt.err {
				if !errors.Is(err, ErrInvalidSpec) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ms := tr.Config.Mounts
			if p := findMount(ms, "/proc"); p == nil || p.Device != "proc" {
				t.Errorf("no /proc")
			}
			for _, d := range []string{"/dev", "/dev/pts", "/dev/shm"} {
				if findMount(ms, d) == nil {
					t.Errorf("no %s", d)
				}
			}
			check := func(dest string, want int) {
				m := findMount(ms, dest)
				switch {
				case want < 0 && m != nil:
					t.Errorf("%s mounted", dest)
				case want >= 0 && m == nil:
					t.Errorf("%s not mounted", dest)
				case m != nil && m.Flags&unix.MS_RDONLY != want:
					t.Errorf("%s flags %#x, want ro bit %#x", dest, m.Flags, want)
				}
			}
			check("/sys", tt.sys)
			check("/sys/fs/cgroup", tt.cgroup)
			if got := slices.Contains(tr.Config.ReadonlyPaths, "/proc/sys"); got != tt.roProc {
				t.Errorf("read-only /proc/sys = %v", got)
			}
			if got := findMount(ms, "/dev/mqueue") != nil; got != tt.mqueue {
				t.Errorf("mqueue = %v", got)
			}
		})
	}
	tr, _ := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{PTYMax: 1024}})
	if pts := findMount(tr.Config.Mounts, "/dev/pts"); !strings.Contains(pts.Data, "max=1024") {
		t.Errorf("devpts data = %q", pts.Data)
	}
}

func TestTranslateMounts(t *testing.T) {
	vol := t.TempDir()
	os.MkdirAll(filepath.Join(vol, "docker--etc-nginx"), 0o755)
	os.WriteFile(filepath.Join(vol, "file"), nil, 0o644)
	resolve := PrefixResolver(map[string]string{"/volumes/web": vol})
	tests := []struct {
		name string
		in   spec.Mount
		want *configs.Mount // nil = skipped
		err  string
	}{
		{"volume bind", spec.Mount{Source: "/volumes/web/docker--etc-nginx", Target: "etc/nginx", FSType: "none", Options: []string{"bind", "rw", "create=dir"}},
			&configs.Mount{Source: filepath.Join(vol, "docker--etc-nginx"), Destination: "/etc/nginx", Device: "bind", Flags: unix.MS_BIND}, ""},
		{"rbind ro file", spec.Mount{Source: "/volumes/web/file", Target: "/etc/f", FSType: "none", Options: []string{"rbind", "ro", "create=file", "rslave"}},
			&configs.Mount{Source: filepath.Join(vol, "file"), Destination: "/etc/f", Device: "bind", Flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, PropagationFlags: []int{unix.MS_SLAVE | unix.MS_REC}}, ""},
		{"host bind", spec.Mount{Source: vol, Target: "mnt/v", FSType: "none", Options: []string{"bind"}},
			&configs.Mount{Source: vol, Destination: "/mnt/v", Device: "bind", Flags: unix.MS_BIND}, ""},
		{"tmpfs", spec.Mount{Source: "tmpfs", Target: "run", FSType: "tmpfs", Options: []string{"rw", "nodev", "create=dir", "mode=0755", "size=1m"}},
			&configs.Mount{Source: "tmpfs", Destination: "/run", Device: "tmpfs", Flags: unix.MS_NODEV, Data: "mode=0755,size=1m"}, ""},
		{"optional missing", spec.Mount{Source: "/volumes/web/nope", Target: "x", FSType: "none", Options: []string{"bind", "optional"}}, nil, ""},
		{"optional unresolvable", spec.Mount{Source: "/volumes/other/x", Target: "x", FSType: "none", Options: []string{"bind", "optional"}}, nil, ""},
		{"missing", spec.Mount{Source: "/volumes/web/nope", Target: "x", FSType: "none", Options: []string{"bind"}}, nil, "/volumes/web/nope"},
		{"unresolvable", spec.Mount{Source: "/volumes/other/x", Target: "x", FSType: "none", Options: []string{"bind"}}, nil, "no volume"},
		{"bind with data", spec.Mount{Source: vol, Target: "x", FSType: "none", Options: []string{"bind", "mode=1"}}, nil, "filesystem options"},
		{"relative source", spec.Mount{Source: "vol", Target: "x", FSType: "none", Options: []string{"bind"}}, nil, "not absolute"},
		{"root target", spec.Mount{Source: "tmpfs", Target: "", FSType: "tmpfs"}, nil, "root"},
		{"no type", spec.Mount{Source: "x", Target: "x", FSType: "none"}, nil, "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Translate(Input{Name: "web", Rootfs: "/r", ResolveSource: resolve, Spec: &spec.Container{Mounts: []spec.Mount{tt.in}}})
			if tt.err != "" {
				if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrInvalidSpec with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			base := len(baseMounts(true, 0, mountAuto{}))
			got := tr.Config.Mounts[base:]
			if tt.want == nil {
				if len(got) != 0 {
					t.Fatalf("mount not skipped: %+v", got[0])
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d mounts", len(got))
			}
			g := got[0]
			if g.Source != tt.want.Source || g.Destination != tt.want.Destination || g.Device != tt.want.Device ||
				g.Flags != tt.want.Flags || g.Data != tt.want.Data || !slices.Equal(g.PropagationFlags, tt.want.PropagationFlags) {
				t.Errorf("mount = %+v\nwant    %+v", *g, *tt.want)
			}
		})
	}
}

func TestTranslateJoinsErrors(t *testing.T) {
	_, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{
		CapDrop: []string{"fly"}, NamespaceKeep: []string{"bogus"}, Cgroup: []spec.CgroupSetting{{Version: 1, Key: "x.y", Value: "1"}},
	}})
	for _, s := range []string{"translate container c", "fly", "bogus", "cgroup.x.y"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v lacks %q", err, s)
		}
	}
}

func TestPrefixResolver(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"s/web/docker--etc", "disk/big/x", "s/db/b", "img/etc"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// An image whose link -> / must bind the image's own root.
	if err := os.Symlink("/", filepath.Join(base, "img", "link")); err != nil {
		t.Fatal(err)
	}
	r := PrefixResolver(map[string]string{
		"/volumes/web": base + "/s/web", "/volumes/web/big": base + "/disk/big", "/volumes/db/": base + "/s/db",
		"/volumes/app/root.squashfs": base + "/img",
	})
	tests := []struct{ in, want, err string }{
		{"/volumes/web/docker--etc", base + "/s/web/docker--etc", ""},
		{"/volumes/web/big/x", base + "/disk/big/x", ""},
		{"/volumes/web", base + "/s/web", ""},
		{"/volumes/db/a/../b", "", "no such file"}, // a does not exist in the volume
		{"/volumes/db/./b", base + "/s/db/b", ""},
		{"/volumes/db/../../etc", base + "/s/db/etc", "no such file"},
		{"/volumes/db/../..", base + "/s/db", ""},
		{"/volumes/app/root.squashfs/link", base + "/img", ""},
		{"/volumes/app/root.squashfs/link/etc", base + "/img/etc", ""},
		{"/volumes/webby/x", "", "no volume"},
		{"/etc/resolv.conf", "/etc/resolv.conf", ""},
	}
	for _, tt := range tests {
		got, err := r(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolve(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if got != tt.want || err != nil {
			t.Errorf("resolve(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestExit(t *testing.T) {
	tests := []struct {
		ws   unix.WaitStatus
		want Exit
	}{
		{0, Exit{}},
		{3 << 8, Exit{Code: 3}},
		{9, Exit{Code: 137, Signal: 9}},
		{15 | 0x80, Exit{Code: 143, Signal: 15}}, // core dumped
	}
	for _, tt := range tests {
		got := exitFromStatus(syscallWS(tt.ws), tt.want.At)
		if got != tt.want {
			t.Errorf("exit(%#x) = %+v, want %+v", tt.ws, got, tt.want)
		}
	}
}

func syscallWS(ws unix.WaitStatus) syscall.WaitStatus { return syscall.WaitStatus(ws) }

// Confinement asked for and not enforced refuses the container, naming
// the key; no_new_privs reaches libcontainer.
func TestTranslateConfinement(t *testing.T) {
	_, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{
		Unenforceable: []string{"lxc.seccomp.profile (line 3): seccomp profiles are not enforced yet"}}})
	if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "lxc.seccomp.profile") {
		t.Fatalf("unenforceable seccomp: %v", err)
	}
	tr, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{NoNewPrivileges: true, AppArmorProfile: "unconfined"}})
	if err != nil || !tr.Config.NoNewPrivileges {
		t.Fatalf("no_new_privs: %v %v", tr, err)
	}
}

// An AppArmor profile is applied where the kernel enforces AppArmor and
// ignored where it does not, as LXC does; "generated" needs LXC's profile
// generator and is refused.
func TestTranslateAppArmor(t *testing.T) {
	saved := appArmorEnabled
	t.Cleanup(func() { appArmorEnabled = saved })
	for _, tc := range []struct {
		enabled       bool
		profile, want string
		refused       bool
	}{
		{true, "lxc-container-default-cgns", "lxc-container-default-cgns", false},
		{true, "unconfined", "", false},
		{true, "generated", "", true},
		{false, "lxc-container-default-cgns", "", false},
		{false, "generated", "", false},
	} {
		appArmorEnabled = func() bool { return tc.enabled }
		tr, err := Translate(Input{Name: "c", Rootfs: "/r", Spec: &spec.Container{AppArmorProfile: tc.profile}})
		if tc.refused {
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "lxc.apparmor.profile = generated") {
				t.Errorf("%v %q: %v, want a refusal", tc.enabled, tc.profile, err)
			}
			continue
		}
		if err != nil || tr.Config.AppArmorProfile != tc.want {
			t.Errorf("AppArmor %v, profile %q: got %+v %v, want %q", tc.enabled, tc.profile, tr, err, tc.want)
		}
	}
}

// A seccomp profile runs the command through the seccomp exec: the init
// binary again, with the compiled filter in its environment; a profile
// that cannot be compiled refuses the container naming the key.
func TestTranslateSeccomp(t *testing.T) {
	s := upstreamTemplate()
	s.Seccomp = &spec.Seccomp{Default: spec.SeccompAction{Kind: spec.SeccompAllow}, Rules: []spec.SeccompRule{
		{Line: 3, Syscall: "mkdir", Action: spec.SeccompAction{Kind: spec.SeccompErrno, Errno: 13}}}}
	tr, err := Translate(Input{Name: "web", Rootfs: "/r", Spec: s})
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]string{"/proc/self/exe"}, s.Args...); !slices.Equal(tr.Args, want) {
		t.Errorf("args %q, want %q", tr.Args, want)
	}
	var filter string
	for _, e := range tr.Env {
		if v, ok := strings.CutPrefix(e, initshim.SeccompEnv+"="); ok {
			filter = v
		}
	}
	raw, err := hex.DecodeString(filter)
	if err != nil || len(raw) == 0 || len(raw)%8 != 0 {
		t.Fatalf("filter %q: %v", filter, err)
	}
	want, err := seccomp.Compile(s.Seccomp)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 8*len(want) || binary.NativeEndian.Uint32(raw[4:]) != want[0].K {
		t.Errorf("the filter handed over is not the compiled one: %d bytes for %d instructions", len(raw), len(want))
	}

	s.Seccomp.Rules[0].Action = spec.SeccompAction{Kind: spec.SeccompNotify}
	_, err = Translate(Input{Name: "web", Rootfs: "/r", Spec: s})
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "refused: lxc.seccomp.profile: line 3: mkdir: notify") {
		t.Errorf("notify: %v", err)
	}
}
