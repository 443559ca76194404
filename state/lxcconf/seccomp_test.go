package lxcconf

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pantavisor/pv/spec"
)

var (
	kill  = spec.SeccompAction{Kind: spec.SeccompKill}
	allow = spec.SeccompAction{Kind: spec.SeccompAllow}
)

func errnoAction(e uint16) spec.SeccompAction {
	return spec.SeccompAction{Kind: spec.SeccompErrno, Errno: e}
}

func TestParseSeccompProfile(t *testing.T) {
	ok := []struct {
		name, in string
		want     *spec.Seccomp
	}{
		{
			name: "format 1: an allowlist of native numbers",
			in:   "1\nallowlist\n0\n1 # trailing text after the number, as LXC's sscanf\n\n60\n",
			want: &spec.Seccomp{Default: kill, NativeOnly: true, Rules: []spec.SeccompRule{
				{Line: 3, Syscall: "0", Action: allow}, {Line: 4, Syscall: "1", Action: allow}, {Line: 6, Syscall: "60", Action: allow}}},
		},
		{
			name: "format 1 with LXC's old name",
			in:   "1\nwhitelist\n0\n",
			want: &spec.Seccomp{Default: kill, NativeOnly: true, Rules: []spec.SeccompRule{{Line: 3, Syscall: "0", Action: allow}}},
		},
		{
			name: "denylist: allow by default, rules kill unless they say",
			in:   "2\ndenylist\n# comment\nkexec_load\nmkdir errno 13\nioctl trap\nreject_force_umount  # comment this to allow umount -f\n",
			want: &spec.Seccomp{Default: allow, Rules: []spec.SeccompRule{
				{Line: 4, Syscall: "kexec_load", Action: kill},
				{Line: 5, Syscall: "mkdir", Action: errnoAction(13)},
				{Line: 6, Syscall: "ioctl", Action: spec.SeccompAction{Kind: spec.SeccompTrap}},
				{Line: 7, Syscall: "umount2", Action: errnoAction(13), Args: []spec.SeccompArg{{Index: 1, Op: "&=", Value: 1, Mask: 1}}},
			}},
		},
		{
			name: "allowlist with a default action, sections and argument rules",
			in: "2\nallowlist errno 38\n[x86_64]\nread\nwrite allow [0,1,==] [2,0x10,SCMP_CMP_LE]\n[ALL]\n" +
				"mknod errno 1 [1,0x6000,SCMP_CMP_MASKED_EQ,0xf000]\n[arm64]\nopenat kill [ 1 , 0100 , &= , 0100 ]\n",
			want: &spec.Seccomp{Default: errnoAction(38), Rules: []spec.SeccompRule{
				{Line: 4, Syscall: "read", Arch: "x86_64", Action: allow},
				{Line: 5, Syscall: "write", Arch: "x86_64", Action: allow, Args: []spec.SeccompArg{{Index: 0, Op: "==", Value: 1}, {Index: 2, Op: "<=", Value: 16}}},
				{Line: 7, Syscall: "mknod", Arch: "all", Action: errnoAction(1), Args: []spec.SeccompArg{{Index: 1, Op: "&=", Value: 0x6000, Mask: 0xf000}}},
				{Line: 9, Syscall: "openat", Arch: "arm64", Action: kill, Args: []spec.SeccompArg{{Index: 1, Op: "&=", Value: 0o100, Mask: 0o100}}},
			}},
		},
		{
			name: "blacklist, LXC's old name, with its default action",
			in:   "2\nblacklist errno 1\npersonality allow [0,0,==]\n",
			want: &spec.Seccomp{Default: errnoAction(1), Rules: []spec.SeccompRule{
				{Line: 3, Syscall: "personality", Action: allow, Args: []spec.SeccompArg{{Index: 0, Op: "==", Value: 0}}}}},
		},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSeccompProfile(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}

	bad := []struct{ name, in, want string }{
		{"empty", "", "empty profile"},
		{"unknown version", "3\nallowlist\n", `line 1: format version "3"`},
		{"no policy line", "2\n", "line 2: missing"},
		{"unknown policy", "2\ngraylist\n", `line 2: policy type "graylist"`},
		{"debug", "2\ndenylist debug\n", `"debug" is not supported`},
		{"format 1 denylist", "1\ndenylist\n", "format 1 only has allowlists"},
		{"format 1 name", "1\nallowlist\n0\nread\n", `line 4: "read": want a system call number`},
		{"unknown section", "2\ndenylist\nread\n[sparc]\n", `line 4: unsupported architecture section "[sparc]"`},
		{"errno without number", "2\ndenylist\nmkdir errno\n", "line 3: mkdir: errno needs a number"},
		{"errno too large", "2\ndenylist\nmkdir errno 5000\n", "from 0 to 4095"},
		{"unknown action", "2\ndenylist\nmkdir bogus\n", `line 3: mkdir: action "bogus"`},
		{"words after the action", "2\ndenylist\nmkdir errno 1 extra\n", `"extra" after the action`},
		{"words after the default", "2\ndenylist errno 1 x\n", `line 2: "x" after the default action`},
		{"bad default", "2\nallowlist errno x\n", "line 2: default action: errno"},
		{"argument index", "2\ndenylist\nioctl errno 1 [6,1,==]\n", `index "6": want 0 to 5`},
		{"argument operator", "2\ndenylist\nioctl errno 1 [0,1,=~]\n", `operator "=~"`},
		{"argument value", "2\ndenylist\nioctl errno 1 [0,-1,==]\n", `value "-1"`},
		{"masked without mask", "2\ndenylist\nioctl errno 1 [0,1,&=]\n", "&= needs a mask"},
		{"argument twice", "2\ndenylist\nioctl errno 1 [0,1,==] [0,2,==]\n", "argument 0 is compared twice"},
		{"unclosed", "2\ndenylist\nioctl errno 1 [0,1,==\n", "has no closing ]"},
		{"too few fields", "2\ndenylist\nioctl errno 1 [0,1]\n", "want index,value,op"},
		{"not a name", "2\ndenylist\nMKDIR\n", `"MKDIR" is not a system call name`},
		{"force umount with more", "2\ndenylist\nreject_force_umount kill\n", "reject_force_umount takes nothing"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseSeccompProfile(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %+v, err %v, want an error with %q", p, err, tc.want)
			}
		})
	}
}

// lxc.seccomp.profile reads its file from the container's directory of the
// revision, as lxc.include does, and a bad profile is an error on the key
// naming the file and its line.
func TestSeccompProfileKey(t *testing.T) {
	files := map[string]string{
		"deny.seccomp":     "2\ndenylist\nmkdir errno 13\n",
		"sub/bad.seccomp":  "2\ndenylist\nmkdir errno\n",
		"common.conf":      lines("lxc.seccomp.profile = deny.seccomp"),
		"nested.conf":      lines("lxc.seccomp.profile = sub/bad.seccomp"),
		"empty-after.conf": lines("lxc.seccomp.profile = deny.seccomp", "lxc.seccomp.profile ="),
	}
	want := &spec.Seccomp{Default: allow, Rules: []spec.SeccompRule{{Line: 3, Syscall: "mkdir", Action: errnoAction(13)}}}
	for _, in := range []string{"lxc.seccomp.profile = deny.seccomp\n", "lxc.seccomp = ./deny.seccomp\n", "lxc.include = common.conf\n"} {
		c, _, err := ParseIncludes(strings.NewReader(in), mapOpener(files))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !reflect.DeepEqual(c.Seccomp, want) || len(c.Unenforceable) != 0 {
			t.Errorf("%q: seccomp %+v, unenforceable %q", in, c.Seccomp, c.Unenforceable)
		}
	}
	c, _, err := ParseIncludes(strings.NewReader("lxc.include = empty-after.conf\nlxc.seccomp.allow_nesting = 1\n"), mapOpener(files))
	if err != nil || c.Seccomp != nil {
		t.Errorf("an empty value clears the profile: %+v, %v", c, err)
	}

	for in, msg := range map[string]string{
		"lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp\n": `line 1: lxc.seccomp.profile: "/usr/share/lxc/config/common.seccomp" is a host path`,
		"lxc.seccomp.profile = ../x.seccomp\n":                         "leaves the container's directory",
		"\nlxc.seccomp.profile = none.seccomp\n":                       `line 2: lxc.seccomp.profile: open "none.seccomp"`,
		"lxc.seccomp.profile = sub/bad.seccomp\n":                      "line 1: lxc.seccomp.profile: sub/bad.seccomp: line 3: mkdir: errno needs a number",
		"lxc.include = nested.conf\n":                                  "nested.conf line 1: lxc.seccomp.profile: sub/bad.seccomp: line 3",
		"lxc.seccomp.allow_nesting = 2\n":                              "lxc.seccomp.allow_nesting: must be 0 or 1",
	} {
		_, _, err := ParseIncludes(strings.NewReader(in), mapOpener(files))
		var se *SyntaxError
		if err == nil || !strings.Contains(err.Error(), msg) || !errors.As(err, &se) {
			t.Errorf("%q: err %v, want a SyntaxError with %q", in, err, msg)
		}
	}
}

func FuzzParseSeccompProfile(f *testing.F) {
	for _, s := range []string{
		"1\nallowlist\n0\n1\n",
		"2\ndenylist\nkexec_load\nmkdir errno 13\nreject_force_umount # c\n",
		"2\nallowlist errno 38\n[x86_64]\nwrite allow [0,1,==] [2,0x10,SCMP_CMP_LE]\n[all]\nmknod errno 1 [1,0x6000,&=,0xf000]\n",
		"2\nblacklist trap\n[X86]\nioctl notify [1,2,!=]\n",
		"2\ndenylist\nioctl errno 1 [0,1,==\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParseSeccompProfile(in)
		if err != nil {
			if p != nil {
				t.Fatalf("error %v came with a profile", err)
			}
			return
		}
		for _, r := range p.Rules {
			if r.Line < 3 || r.Syscall == "" || r.Action.Kind == "" {
				t.Fatalf("rule %+v", r)
			}
			for _, a := range r.Args {
				if a.Index > 5 || seccompOps[a.Op] != a.Op {
					t.Fatalf("argument %+v", a)
				}
			}
		}
	})
}
