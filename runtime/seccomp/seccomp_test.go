package seccomp

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/spec"
	"github.com/pantavisor/pv/state/lxcconf"
)

// amd64 are the ABIs of an x86_64 machine, whatever this one is.
var amd64 = []ABI{{"x86_64", arch.X86_64}, {"x86", arch.I386}, {"x32", arch.X32}}

// call is one system call as the filter sees it.
type call struct {
	arch uint32
	nr   uint32
	args [6]uint64
}

// run executes the filter on c in x/net/bpf's interpreter. The interpreter
// loads words big-endian (network order), so each 32-bit field is written
// big-endian at the offset the kernel's little-endian seccomp_data has it.
func run(t *testing.T, prog []bpf.RawInstruction, c call) uint32 {
	t.Helper()
	ins, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatal("the program does not disassemble")
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("the interpreter refuses the program: %v", err)
	}
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[offNr:], c.nr)
	binary.BigEndian.PutUint32(data[offArch:], c.arch)
	for i, v := range c.args {
		binary.BigEndian.PutUint32(data[offArgs+8*i:], uint32(v))
		binary.BigEndian.PutUint32(data[offArgs+8*i+4:], uint32(v>>32))
	}
	r, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(r)
}

func compile(t *testing.T, profile string) []bpf.RawInstruction {
	t.Helper()
	p, err := lxcconf.ParseSeccompProfile(profile)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := CompileFor(p, amd64)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

func nr(t *testing.T, info *arch.Info, name string) uint32 {
	t.Helper()
	n, ok := info.SyscallNames[name]
	if !ok {
		t.Fatalf("%s has no %s", info.Name, name)
	}
	return uint32(n) | uint32(info.SeccompMask)
}

const (
	allow = unix.SECCOMP_RET_ALLOW
	kill  = unix.SECCOMP_RET_KILL_PROCESS
)

func errno(e uint32) uint32 { return unix.SECCOMP_RET_ERRNO | e }

func TestDenylistCoversEveryABI(t *testing.T) {
	prog := compile(t, "2\ndenylist\n# no directories\nmkdir errno 13\nmkdirat errno 13\nkexec_load\nreject_force_umount  # no umount -f\n")
	for _, abi := range amd64 {
		a := uint32(abi.info.ID)
		if got := run(t, prog, call{arch: a, nr: nr(t, abi.info, "mkdir")}); got != errno(13) {
			t.Errorf("%s mkdir: %#x, want errno 13", abi.Section, got)
		}
		if got := run(t, prog, call{arch: a, nr: nr(t, abi.info, "kexec_load")}); got != kill {
			t.Errorf("%s kexec_load: %#x, want the denylist's kill", abi.Section, got)
		}
		if got := run(t, prog, call{arch: a, nr: nr(t, abi.info, "read")}); got != allow {
			t.Errorf("%s read: %#x, want allowed", abi.Section, got)
		}
		umount := nr(t, abi.info, "umount2")
		if got := run(t, prog, call{arch: a, nr: umount, args: [6]uint64{0, unix.MNT_FORCE | unix.MNT_DETACH}}); got != errno(uint32(unix.EACCES)) {
			t.Errorf("%s umount2 MNT_FORCE: %#x, want EACCES", abi.Section, got)
		}
		if got := run(t, prog, call{arch: a, nr: umount, args: [6]uint64{0, unix.MNT_DETACH}}); got != allow {
			t.Errorf("%s umount2 without MNT_FORCE: %#x, want allowed", abi.Section, got)
		}
	}
	// mkdirat has no i386 number in every table; mkdir is enough there.
	if got := run(t, prog, call{arch: uint32(arch.X86_64.ID), nr: nr(t, arch.X86_64, "mkdirat")}); got != errno(13) {
		t.Errorf("x86_64 mkdirat: %#x", got)
	}
	if got := run(t, prog, call{arch: uint32(arch.AARCH64.ID), nr: 1}); got != kill {
		t.Errorf("a foreign architecture: %#x, want kill", got)
	}
}

func TestAllowlistAndDefaults(t *testing.T) {
	prog := compile(t, "2\nallowlist errno 38\nread\nwrite\nexit_group\nopenat kill\n")
	x := uint32(arch.X86_64.ID)
	for name, want := range map[string]uint32{"read": allow, "write": allow, "openat": kill, "mkdir": errno(38)} {
		if got := run(t, prog, call{arch: x, nr: nr(t, arch.X86_64, name)}); got != want {
			t.Errorf("%s: %#x, want %#x", name, got, want)
		}
	}
	// An x32 call of a number not in the list gets the default too.
	if got := run(t, prog, call{arch: x, nr: nr(t, arch.X32, "mkdir")}); got != errno(38) {
		t.Errorf("x32 mkdir: %#x", got)
	}
	if got := run(t, prog, call{arch: x, nr: nr(t, arch.X32, "read")}); got != allow {
		t.Errorf("x32 read: %#x", got)
	}
}

func TestFormat1IsNativeOnly(t *testing.T) {
	prog := compile(t, "1\nallowlist\n0\n1\n60\n")
	x := uint32(arch.X86_64.ID)
	if got := run(t, prog, call{arch: x, nr: 1}); got != allow {
		t.Errorf("write: %#x", got)
	}
	if got := run(t, prog, call{arch: x, nr: 2}); got != kill {
		t.Errorf("open: %#x, want kill", got)
	}
	if got := run(t, prog, call{arch: uint32(arch.I386.ID), nr: 1}); got != kill {
		t.Errorf("an i386 call under a format 1 profile: %#x, want kill", got)
	}
}

func TestSections(t *testing.T) {
	// As LXC: a rule of another family is left out; a rule in any
	// section of the machine's family covers all its ABIs.
	prog := compile(t, "2\ndenylist\n[arm64]\nmkdir errno 1\n[x86]\nrmdir errno 2\n[all]\nchdir errno 3\n")
	x := uint32(arch.X86_64.ID)
	if got := run(t, prog, call{arch: x, nr: nr(t, arch.X86_64, "mkdir")}); got != allow {
		t.Errorf("arm64-only rule applied on x86_64: %#x", got)
	}
	if got := run(t, prog, call{arch: x, nr: nr(t, arch.X86_64, "rmdir")}); got != errno(2) {
		t.Errorf("[x86] rule on x86_64: %#x", got)
	}
	if got := run(t, prog, call{arch: uint32(arch.I386.ID), nr: nr(t, arch.I386, "chdir")}); got != errno(3) {
		t.Errorf("[all] rule on i386: %#x", got)
	}
}

// Every comparison, at the 32-bit boundaries where the two halves
// disagree, against Go's own 64-bit arithmetic.
func TestArgumentComparisons(t *testing.T) {
	values := []uint64{0, 1, 2, 0xffffffff, 0x100000000, 0x100000001, 0x1ffffffff, 1 << 63, ^uint64(0), ^uint64(0) - 1}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		values = append(values, r.Uint64(), r.Uint64()>>32, uint64(r.Uint32()))
	}
	holds := map[string]func(arg, v, m uint64) bool{
		"==": func(a, v, _ uint64) bool { return a == v },
		"!=": func(a, v, _ uint64) bool { return a != v },
		"<":  func(a, v, _ uint64) bool { return a < v },
		"<=": func(a, v, _ uint64) bool { return a <= v },
		">":  func(a, v, _ uint64) bool { return a > v },
		">=": func(a, v, _ uint64) bool { return a >= v },
		"&=": func(a, v, m uint64) bool { return a&m == v },
	}
	x := uint32(arch.X86_64.ID)
	write := nr(t, arch.X86_64, "write")
	for op, f := range holds {
		for _, v := range values {
			mask := v | 0xf0f0f0f0f0f0f0f0
			p := &spec.Seccomp{Default: spec.SeccompAction{Kind: spec.SeccompAllow}, Rules: []spec.SeccompRule{{
				Syscall: "write", Action: spec.SeccompAction{Kind: spec.SeccompErrno, Errno: 1},
				Args: []spec.SeccompArg{{Index: 2, Op: op, Value: v, Mask: mask}},
			}}}
			prog, err := CompileFor(p, amd64)
			if err != nil {
				t.Fatal(err)
			}
			for _, arg := range values {
				want := uint32(allow)
				if f(arg, v, mask) {
					want = errno(1)
				}
				if got := run(t, prog, call{arch: x, nr: write, args: [6]uint64{0, 0, arg}}); got != want {
					t.Fatalf("arg %#x %s %#x (mask %#x): %#x, want %#x", arg, op, v, mask, got, want)
				}
			}
		}
	}
}

func TestConditionsAreANDedAndOrdered(t *testing.T) {
	prog := compile(t, "2\nallowlist\nioctl errno 1 [1,0x5401,==] [0,2,<=]\nioctl errno 2 [1,0x5401,==]\nioctl\n")
	x := uint32(arch.X86_64.ID)
	io := nr(t, arch.X86_64, "ioctl")
	for _, tc := range []struct {
		fd, req uint64
		want    uint32
	}{{1, 0x5401, errno(1)}, {3, 0x5401, errno(2)}, {1, 0x5402, allow}} {
		if got := run(t, prog, call{arch: x, nr: io, args: [6]uint64{tc.fd, tc.req}}); got != tc.want {
			t.Errorf("ioctl(%d, %#x): %#x, want %#x", tc.fd, tc.req, got, tc.want)
		}
	}
}

func TestCompileErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ profile, want string }{
		{"2\ndenylist\nread\nmkdri errno 1\n", `line 4: system call "mkdri" is unknown on x86_64, x86, x32`},
		{"2\ndenylist\nioctl notify\n", "line 3: ioctl: notify needs a seccomp notification proxy"},
		{"2\ndenylist notify\n", "default action: notify"},
	} {
		p, err := lxcconf.ParseSeccompProfile(tc.profile)
		if err != nil {
			t.Fatal(err)
		}
		_, err = CompileFor(p, amd64)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.profile, err, tc.want)
		}
	}
}

func TestLargeProfileJumpsFar(t *testing.T) {
	// More rules than a conditional jump can skip: the architecture
	// dispatch must still reach every block.
	var b strings.Builder
	b.WriteString("2\nallowlist\n")
	n := 0
	for name := range arch.X86_64.SyscallNames {
		if _, ok := arch.I386.SyscallNames[name]; ok && name != "getpid" {
			b.WriteString(name + "\n")
			n++
		}
	}
	prog := compile(t, b.String())
	if len(prog) < 2*n {
		t.Fatalf("%d instructions for %d rules", len(prog), n)
	}
	if got := run(t, prog, call{arch: uint32(arch.I386.ID), nr: nr(t, arch.I386, "getpid")}); got != kill {
		t.Errorf("i386 getpid: %#x, want kill", got)
	}
	if got := run(t, prog, call{arch: uint32(arch.I386.ID), nr: nr(t, arch.I386, "read")}); got != allow {
		t.Errorf("i386 read: %#x, want allow", got)
	}
}

// Whatever profile parses compiles to a program the interpreter accepts,
// or to an error; never to a panic or a program past the kernel's limit.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"1\nallowlist\n0\n1\n",
		"2\ndenylist\nkexec_load\nmkdir errno 13\nreject_force_umount # c\n",
		"2\nallowlist errno 38\n[x86_64]\nwrite allow [0,1,==] [2,0x10,SCMP_CMP_LE]\n[all]\nmknod errno 1 [1,0x6000,&=,0xf000]\n",
		"2\nblacklist trap\n[X86]\nioctl errno 1 [1,2,!=] [0,3,>] [2,4,<] [3,5,>=] [4,6,<=] [5,7,==]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := lxcconf.ParseSeccompProfile(in)
		if err != nil {
			return
		}
		prog, err := CompileFor(p, amd64)
		if err != nil {
			return
		}
		if len(prog) == 0 || len(prog) > maxInstructions {
			t.Fatalf("%d instructions", len(prog))
		}
		ins, ok := bpf.Disassemble(prog)
		if !ok {
			t.Fatal("does not disassemble")
		}
		if _, err := bpf.NewVM(ins); err != nil {
			t.Fatalf("the interpreter refuses the program: %v", err)
		}
	})
}
