// Package seccomp compiles a container's system call filter (spec.Seccomp,
// read from LXC's profile formats by state/lxcconf) into the classic BPF
// program the kernel runs on each system call.
//
// LXC builds its filters with libseccomp. libcontainer can too, but only
// through cgo and a libseccomp built for the C library pantavisor is
// statically linked with (musl), which distributions do not ship. The
// filter a profile describes is small and regular (an architecture check,
// then one comparison per rule), so it is assembled here instead, in Go,
// with the system call tables of github.com/elastic/go-seccomp-bpf/arch.
//
// The program follows LXC's semantics: on x86_64 the rules also cover the
// i386 and x32 ABIs (on arm64, arm), each through its own numbers; a call
// of any other ABI is killed; rules are tried in the profile's order and
// the first match decides.
package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/spec"
)

// ABI is one system call ABI a filter covers.
type ABI struct {
	// Section is the name of the ABI's section in LXC's profiles.
	Section string
	info    *arch.Info
}

// Native returns the ABIs of this machine's architecture: the native one
// first, then its compat ABIs, as LXC covers them.
func Native() ([]ABI, error) {
	switch runtime.GOARCH {
	case "amd64":
		return []ABI{{"x86_64", arch.X86_64}, {"x86", arch.I386}, {"x32", arch.X32}}, nil
	case "arm64":
		return []ABI{{"arm64", arch.AARCH64}, {"arm", arch.ARM}}, nil
	case "386":
		return []ABI{{"x86", arch.I386}}, nil
	case "arm":
		return []ABI{{"arm", arch.ARM}}, nil
	}
	return nil, fmt.Errorf("no system call table for %s", runtime.GOARCH)
}

// The layout of struct seccomp_data, the input of the program.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// maxInstructions is the kernel's limit on a filter's length (BPF_MAXINSNS).
const maxInstructions = 4096

// Compile assembles the filter of p for this machine.
func Compile(p *spec.Seccomp) ([]bpf.RawInstruction, error) {
	abis, err := Native()
	if err != nil {
		return nil, err
	}
	return CompileFor(p, abis)
}

// CompileFor assembles the filter of p for abis, the native ABI first.
// Errors name the profile line.
func CompileFor(p *spec.Seccomp, abis []ABI) ([]bpf.RawInstruction, error) {
	if p == nil || len(abis) == 0 {
		return nil, errors.New("no profile or no ABI")
	}
	if p.NativeOnly {
		abis = abis[:1]
	}
	def, err := action(p.Default)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	// Resolve every rule for every ABI first: a name no table knows is
	// most likely a typo, and skipping it (as LXC does) would leave a
	// denylist open where its author meant it shut.
	per := make([][]resolved, len(abis))
	for _, r := range p.Rules {
		act, err := action(r.Action)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", r.Line, r.Syscall, err)
		}
		if !relevant(r.Arch, abis[0].Section) {
			continue
		}
		known := false
		for i, a := range abis {
			nr, ok := number(r.Syscall, a, p.NativeOnly)
			if !ok {
				continue
			}
			known = true
			per[i] = append(per[i], resolved{nr: nr, ret: act, args: r.Args})
		}
		if !known {
			return nil, fmt.Errorf("line %d: system call %q is unknown on %s", r.Line, r.Syscall, sections(abis))
		}
	}

	var a asm
	a.load(offArch)
	// Architecture dispatch: x86_64 and x32 share an audit architecture
	// and are told apart by the x32 bit of the number, in x86_64's block.
	blocks := make([]label, len(abis))
	x32 := -1
	for i, abi := range abis {
		blocks[i] = a.newLabel()
		if abi.info.SeccompMask != 0 {
			x32 = i
			continue
		}
		next := a.newLabel()
		a.jump(bpf.JumpEqual, uint32(abi.info.ID), none, next)
		a.ja(blocks[i])
		a.mark(next)
	}
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	for i, abi := range abis {
		if i == x32 {
			continue
		}
		a.mark(blocks[i])
		a.load(offNr)
		if x32 >= 0 && abi.info.ID == abis[x32].info.ID {
			native := a.newLabel()
			a.jump(bpf.JumpGreaterOrEqual, uint32(abis[x32].info.SeccompMask), none, native)
			a.ja(blocks[x32])
			a.mark(native)
		}
		a.rules(per[i], def)
	}
	if x32 >= 0 {
		// Entered with the number loaded.
		a.mark(blocks[x32])
		a.rules(per[x32], def)
	}
	prog, err := a.assemble()
	if err != nil {
		return nil, err
	}
	if len(prog) > maxInstructions {
		return nil, fmt.Errorf("the filter has %d instructions, more than the kernel's %d", len(prog), maxInstructions)
	}
	return prog, nil
}

type resolved struct {
	nr   uint32
	ret  uint32
	args []spec.SeccompArg
}

// relevant says whether a rule of section s applies on a machine whose
// native ABI is the section native. As LXC does, a rule in any section of
// the machine's family applies to all the ABIs it covers; sections of
// other families are left out.
func relevant(s, native string) bool {
	family := map[string][]string{
		"x86_64": {"x86_64", "x86", "x32"},
		"arm64":  {"arm64", "arm"},
		"x86":    {"x86"},
		"arm":    {"arm"},
	}[native]
	if s == "" || s == "all" {
		return true
	}
	for _, f := range family {
		if s == f {
			return true
		}
	}
	return false
}

func sections(abis []ABI) string {
	s := ""
	for i, a := range abis {
		if i > 0 {
			s += ", "
		}
		s += a.Section
	}
	return s
}

// number resolves a rule's system call on abi: a name through its table, a
// number (format 1) as it is, on the native ABI.
func number(name string, abi ABI, numeric bool) (uint32, bool) {
	if numeric {
		n, err := strconv.ParseUint(name, 10, 31)
		return uint32(n), err == nil
	}
	n, ok := abi.info.SyscallNames[name]
	if !ok {
		return 0, false
	}
	return uint32(n) | uint32(abi.info.SeccompMask), true
}

// action is the filter's return value for a.
func action(a spec.SeccompAction) (uint32, error) {
	switch a.Kind {
	case spec.SeccompKill:
		// libseccomp's "kill" ends the thread; a process that lost a
		// thread to its filter is in no state to go on, so the whole
		// process is ended (Linux 4.14).
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case spec.SeccompErrno:
		return unix.SECCOMP_RET_ERRNO | uint32(a.Errno), nil
	case spec.SeccompAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case spec.SeccompTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case spec.SeccompNotify:
		return 0, errors.New("notify needs a seccomp notification proxy (lxc.seccomp.notify.proxy), which this runtime does not run")
	}
	return 0, fmt.Errorf("unknown action %q", a.Kind)
}
