package seccomp

import (
	"fmt"

	"golang.org/x/net/bpf"

	"github.com/pantavisor/pv/spec"
)

// label names an instruction position before it is known. Jumps go forward
// only, as classic BPF requires.
type label int

// none is the fall-through target of a conditional jump.
const none label = -1

// asm builds a program with symbolic jump targets, resolved by assemble.
type asm struct {
	ins    []insn
	labels []int // label → instruction index, -1 until marked
}

type insn struct {
	op     bpf.Instruction
	jt, jf label // of a JumpIf
	ja     label // of a Jump; none otherwise
}

func (a *asm) newLabel() label {
	a.labels = append(a.labels, -1)
	return label(len(a.labels) - 1)
}

func (a *asm) mark(l label) { a.labels[l] = len(a.ins) }

func (a *asm) emit(op bpf.Instruction) {
	a.ins = append(a.ins, insn{op: op, jt: none, jf: none, ja: none})
}

func (a *asm) load(off uint32) { a.emit(bpf.LoadAbsolute{Off: off, Size: 4}) }

func (a *asm) and(mask uint32) { a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask}) }

func (a *asm) ret(v uint32) { a.emit(bpf.RetConstant{Val: v}) }

func (a *asm) jump(cond bpf.JumpTest, val uint32, jt, jf label) {
	a.ins = append(a.ins, insn{op: bpf.JumpIf{Cond: cond, Val: val}, jt: jt, jf: jf, ja: none})
}

func (a *asm) ja(l label) { a.ins = append(a.ins, insn{op: bpf.Jump{}, jt: none, jf: none, ja: l}) }

// rules matches the loaded system call number against each rule in turn,
// returning the first match's action, or def.
func (a *asm) rules(rs []resolved, def uint32) {
	for _, r := range rs {
		next := a.newLabel()
		a.jump(bpf.JumpEqual, r.nr, none, next)
		for _, arg := range r.args {
			a.cond(arg, next)
		}
		a.ret(r.ret)
		a.mark(next)
		if len(r.args) > 0 {
			// The comparisons loaded arguments over the number.
			a.load(offNr)
		}
	}
	a.ret(def)
}

// cond falls through when the 64-bit argument comparison holds and jumps
// to fail when not. Classic BPF compares 32 bits at a time: the high
// halves decide unless they are equal. The architectures of Native are
// little-endian, so an argument's low half comes first.
func (a *asm) cond(c spec.SeccompArg, fail label) {
	lo := offArgs + 8*uint32(c.Index)
	hi := lo + 4
	vhi, vlo := uint32(c.Value>>32), uint32(c.Value)
	ok := a.newLabel()
	switch c.Op {
	case "==":
		a.load(hi)
		a.jump(bpf.JumpEqual, vhi, none, fail)
		a.load(lo)
		a.jump(bpf.JumpEqual, vlo, none, fail)
	case "!=":
		a.load(hi)
		a.jump(bpf.JumpEqual, vhi, none, ok)
		a.load(lo)
		a.jump(bpf.JumpEqual, vlo, fail, none)
	case "&=":
		a.load(hi)
		a.and(uint32(c.Mask >> 32))
		a.jump(bpf.JumpEqual, vhi, none, fail)
		a.load(lo)
		a.and(uint32(c.Mask))
		a.jump(bpf.JumpEqual, vlo, none, fail)
	case ">", ">=", "<", "<=":
		// Unsigned: the high halves decide unless they are equal.
		a.load(hi)
		if c.Op[0] == '>' {
			a.jump(bpf.JumpGreaterThan, vhi, ok, none)
		} else {
			a.jump(bpf.JumpGreaterOrEqual, vhi, none, ok)
		}
		a.jump(bpf.JumpEqual, vhi, none, fail)
		a.load(lo)
		switch c.Op {
		case ">":
			a.jump(bpf.JumpGreaterThan, vlo, none, fail)
		case ">=":
			a.jump(bpf.JumpGreaterOrEqual, vlo, none, fail)
		case "<":
			a.jump(bpf.JumpGreaterOrEqual, vlo, fail, none)
		case "<=":
			a.jump(bpf.JumpGreaterThan, vlo, fail, none)
		}
	default:
		// The parser accepts no other operator; a rule that cannot be
		// compiled must not match by accident.
		a.ja(fail)
	}
	a.mark(ok)
}

// assemble resolves the labels and encodes the program.
func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	out := make([]bpf.Instruction, len(a.ins))
	skip := func(i int, l label) (int, error) {
		if l == none {
			return 0, nil
		}
		t := a.labels[l]
		if t < 0 {
			return 0, fmt.Errorf("instruction %d: jump to an unplaced label", i)
		}
		d := t - (i + 1)
		if d < 0 {
			return 0, fmt.Errorf("instruction %d: backward jump", i)
		}
		return d, nil
	}
	for i, in := range a.ins {
		switch op := in.op.(type) {
		case bpf.JumpIf:
			t, err := skip(i, in.jt)
			if err != nil {
				return nil, err
			}
			f, err := skip(i, in.jf)
			if err != nil {
				return nil, err
			}
			if t > 255 || f > 255 {
				return nil, fmt.Errorf("instruction %d: conditional jump of %d/%d past classic BPF's 255", i, t, f)
			}
			op.SkipTrue, op.SkipFalse = uint8(t), uint8(f)
			out[i] = op
		case bpf.Jump:
			d, err := skip(i, in.ja)
			if err != nil {
				return nil, err
			}
			op.Skip = uint32(d)
			out[i] = op
		default:
			out[i] = op
		}
	}
	return bpf.Assemble(out)
}
