package bootloader

import (
	"maps"
	"strings"
	"testing"
)

func TestRevision(t *testing.T) {
	tests := []struct {
		name          string
		env           Env
		rev, done, tr string
	}{
		{"empty: factory", Env{}, "0", "0", ""},
		{"nil: factory", nil, "0", "0", ""},
		{"committed", Env{"pv_rev": "3"}, "3", "3", ""},
		{"trying", Env{"pv_rev": "3", "pv_try": "4"}, "4", "3", "4"},
		{"empty try is no update", Env{"pv_rev": "3", "pv_try": ""}, "3", "3", ""},
		{"try over factory", Env{"pv_try": "1"}, "1", "0", "1"},
		{"empty rev is factory", Env{"pv_rev": ""}, "0", "0", ""},
		{"latch ignored", Env{"pv_rev": "3", "pv_try": "4", "pv_trying": "4"}, "4", "3", "4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.env.Revision(); got != tt.rev {
				t.Errorf("Revision() = %q, want %q", got, tt.rev)
			}
			if got := tt.env.Committed(); got != tt.done {
				t.Errorf("Committed() = %q, want %q", got, tt.done)
			}
			if got := tt.env.Try(); got != tt.tr {
				t.Errorf("Try() = %q, want %q", got, tt.tr)
			}
		})
	}
}

func TestBoot(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		rev  string
		next Env
	}{
		{"factory", Env{}, "0", Env{}},
		{"committed", Env{"pv_rev": "3"}, "3", Env{"pv_rev": "3"}},
		{"first try latches", Env{"pv_rev": "3", "pv_try": "4"}, "4",
			Env{"pv_rev": "3", "pv_try": "4", "pv_trying": "4"}},
		{"second boot of a try rolls back", Env{"pv_rev": "3", "pv_try": "4", "pv_trying": "4"}, "3",
			Env{"pv_rev": "3", "pv_try": "4"}},
		{"stale latch of another rev", Env{"pv_rev": "3", "pv_try": "5", "pv_trying": "4"}, "5",
			Env{"pv_rev": "3", "pv_try": "5", "pv_trying": "5"}},
		{"stale latch, no try", Env{"pv_rev": "3", "pv_trying": "4"}, "3",
			Env{"pv_rev": "3", "pv_trying": "4"}},
		{"rollback from a try of the factory", Env{"pv_try": "1", "pv_trying": "1"}, "0",
			Env{"pv_try": "1"}},
		{"other variables kept", Env{"bootcmd": "run x", "pv_rev": "3", "pv_try": "4"}, "4",
			Env{"bootcmd": "run x", "pv_rev": "3", "pv_try": "4", "pv_trying": "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(tt.env)
			rev, next := tt.env.Boot()
			if rev != tt.rev {
				t.Errorf("rev = %q, want %q", rev, tt.rev)
			}
			if !maps.Equal(next, tt.next) {
				t.Errorf("next = %v, want %v", next, tt.next)
			}
			if !maps.Equal(tt.env, before) {
				t.Errorf("Boot changed its receiver: %v", tt.env)
			}
		})
	}
}

// TestTryOnce runs the whole cycle the latch exists for: a try that never
// commits is booted once, then the committed revision comes back.
func TestTryOnce(t *testing.T) {
	env := Env{"pv_rev": "3"}.installed("4")
	rev, env := env.Boot()
	if rev != "4" {
		t.Fatalf("first boot after install: %s", rev)
	}
	rev, env = env.Boot() // crashed before the commit
	if rev != "3" {
		t.Fatalf("boot after a crashed try: %s", rev)
	}
	env = env.failed() // pantavisor sees pv_try != running rev
	// The same revision, retried, is tried again: Install dropped the latch.
	env = env.installed("4")
	if rev, _ = env.Boot(); rev != "4" {
		t.Fatalf("retry of a failed revision boots %s", rev)
	}
}

func TestTransitions(t *testing.T) {
	tests := []struct {
		name string
		in   Env
		op   func(Env) Env
		want Env
	}{
		{"install on factory", Env{}, func(e Env) Env { return e.installed("1") }, Env{"pv_try": "1"}},
		{"install drops the latch", Env{"pv_rev": "3", "pv_trying": "4"}, func(e Env) Env { return e.installed("4") },
			Env{"pv_rev": "3", "pv_try": "4"}},
		{"install over a pending try", Env{"pv_rev": "3", "pv_try": "4"}, func(e Env) Env { return e.installed("5") },
			Env{"pv_rev": "3", "pv_try": "5"}},
		{"commit", Env{"pv_rev": "3", "pv_try": "4", "pv_trying": "4"}, func(e Env) Env { return e.committed("4") },
			Env{"pv_rev": "4"}},
		{"commit without try", Env{"pv_rev": "3"}, func(e Env) Env { return e.committed("3") }, Env{"pv_rev": "3"}},
		{"fail", Env{"pv_rev": "3", "pv_try": "4", "pv_trying": "4"}, Env.failed, Env{"pv_rev": "3"}},
		{"fail without try", Env{}, Env.failed, Env{}},
		{"others kept", Env{"bootcmd": "boot", "pv_try": "4"}, func(e Env) Env { return e.committed("4") },
			Env{"bootcmd": "boot", "pv_rev": "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(tt.in)
			if got := tt.op(tt.in); !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if !maps.Equal(tt.in, before) {
				t.Errorf("changed its receiver: %v", tt.in)
			}
		})
	}
}

func TestCheckVar(t *testing.T) {
	tests := []struct {
		k, v, bad string
		errHas    string
	}{
		{"pv_rev", "3", "\x00", ""},
		{"", "3", "", "empty name"},
		{"a=b", "3", "", `'='`},
		{"a\x00", "3", "", `'\x00'`},
		{"a\nb", "3", "", `'\n'`},
		{"a", "x\ny", "\n", `value "x\ny" holds '\n'`},
		{"a", "x\ny", "\x00", ""},
	}
	for _, tt := range tests {
		err := checkVar(tt.k, tt.v, tt.bad)
		if tt.errHas == "" && err != nil {
			t.Errorf("checkVar(%q, %q): %v", tt.k, tt.v, err)
		}
		if tt.errHas != "" && (err == nil || !strings.Contains(err.Error(), tt.errHas)) {
			t.Errorf("checkVar(%q, %q) = %v, want an error with %s", tt.k, tt.v, err, tt.errHas)
		}
	}
}

func TestCheckRev(t *testing.T) {
	for _, rev := range []string{"0", "12", "locals/abc-1", "2024.01_x"} {
		if err := checkRev(rev); err != nil {
			t.Errorf("checkRev(%q): %v", rev, err)
		}
	}
	for _, rev := range []string{"", "a b", "a,b", "a\nb", "a\tb", "../x", "a/b", "locals/", "x\x00"} {
		if err := checkRev(rev); err == nil {
			t.Errorf("checkRev(%q) accepted", rev)
		}
	}
}
