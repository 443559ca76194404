package config

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseConfigFile(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []Pair
		errLine  int // 0 = no error
		errIsSyn bool
	}{
		{
			name: "pairs comments blanks",
			in:   "# a comment\n\nPV_LOG_LEVEL=3\n  # indented comment\nlog.dir = /x/ \n",
			want: []Pair{{"PV_LOG_LEVEL", "3", 3}, {"log.dir", "/x/", 5}},
		},
		{
			name: "quotes removed",
			in:   "A=\"a b\"\nB='c'\nC=\"\"\nD=x\"y\"\n",
			want: []Pair{{"A", "a b", 1}, {"B", "c", 2}, {"C", "", 3}, {"D", "x\"y\"", 4}},
		},
		{
			name: "hash inside value is data",
			in:   "PH_CREDS_HOST=a#b\n",
			want: []Pair{{"PH_CREDS_HOST", "a#b", 1}},
		},
		{
			name: "empty value and extra equals",
			in:   "A=\nB=x=y\r\n",
			want: []Pair{{"A", "", 1}, {"B", "x=y", 2}},
		},
		{name: "empty file", in: "", want: nil},
		{name: "missing equals", in: "A=1\nnot a pair\n", errLine: 2},
		{name: "empty key", in: "=1\n", errLine: 1},
		{name: "key with space", in: "PV LOG=1\n", errLine: 1},
		{name: "unterminated quote", in: "A=1\nB=2\nC=\"oops\n", errLine: 3},
		{name: "single quote char", in: "A='\n", errLine: 1},
		{name: "NUL in value", in: "A=x\x00y\n", errLine: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfigFile([]byte(tt.in))
			if tt.errLine != 0 {
				var se *SyntaxError
				if !errors.As(err, &se) || se.Line != tt.errLine || !errors.Is(err, ErrSyntax) {
					t.Fatalf("err = %v, want syntax error on line %d", err, tt.errLine)
				}
				if got != nil {
					t.Errorf("pairs returned with an error: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Pair
	}{
		{
			name: "others ignored",
			in:   "console=ttyS0 root=/dev/mmcblk0p2 pv_log.level=4 quiet ph_creds.host=h\n",
			want: []Pair{{"pv_log.level", "4", 0}, {"ph_creds.host", "h", 0}},
		},
		{
			name: "quoted value",
			in:   `pv_a="x y z" pv_b=1`,
			want: []Pair{{"pv_a", "x y z", 0}, {"pv_b", "1", 0}},
		},
		{
			name: "whole token quoted",
			in:   `"pv_a=x y"	pv_b=2`,
			want: []Pair{{"pv_a", "x y", 0}, {"pv_b", "2", 0}},
		},
		{
			name: "unterminated quote runs to end",
			in:   `pv_a="x y pv_b=2`,
			want: []Pair{{"pv_a", "x y pv_b=2", 0}},
		},
		{
			name: "no equals and empty value",
			in:   "pv_flag pv_e=",
			want: []Pair{{"pv_flag", "", 0}, {"pv_e", "", 0}},
		},
		{
			name: "prefix any case, not mid-word",
			in:   "PV_LOG_LEVEL=1 xpv_a=1 pvfoo=1 Ph_x=2",
			want: []Pair{{"PV_LOG_LEVEL", "1", 0}, {"Ph_x", "2", 0}},
		},
		{name: "empty", in: "   \n", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCmdline(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// Module parameters on the command line reach the module they name, as
// modprobe passes them: dashes in its name are underscores, several join
// in order, blanks in a value stay quoted for finit_module, a bare
// parameter is a boolean, and nothing after "--" (init's arguments).
func TestModuleParams(t *testing.T) {
	in := `console=ttyS0 softdog.soft_margin=30 pv_log.level=4 nf-conntrack.hashsize=4096 ` +
		`softdog.soft_panic=1 usbcore.quirks="0781:5580:k x" loop.max_part .x=1 y.=2 ` +
		`-- squashfs.a=1`
	want := map[string]string{
		"softdog":      "soft_margin=30 soft_panic=1",
		"pv_log":       "level=4",
		"nf_conntrack": "hashsize=4096",
		"usbcore":      `quirks="0781:5580:k x"`,
		"loop":         "max_part",
	}
	if got := ModuleParams(in); !reflect.DeepEqual(got, want) {
		t.Errorf("ModuleParams:\n got %q\nwant %q", got, want)
	}
}

// The boot script's pv_rev= names the booted revision: the last one
// counts, quotes are taken off, and it is no setting (a refusal of it was
// logged on every boot of a real device).
func TestCmdlineRev(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"console=ttyS0 pv_rev=5 quiet", "5", true},
		{"pv_rev=0 root=/dev/mmcblk0p2 pv_rev=locals/x", "locals/x", true},
		{`"pv_rev=7" pv_revision=9 xpv_rev=8`, "7", true},
		{"pv_rev", "", true},
		{"console=ttyS0 pv_try=5", "", false},
	} {
		if got, ok := CmdlineValue(tt.in, CmdlineRev); got != tt.want || ok != tt.ok {
			t.Errorf("%q: %q %v, want %q %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	// The kernel gives init pv_rev=5 as a variable too.
	r, err := New().LoadBoot(BootSources{Cmdline: "console=ttyS0 pv_rev=5 pv_log_level=3", Environ: []string{"pv_rev=5", "PATH=/bin"}})
	if err != nil || len(r.Refused) != 0 || len(r.Warnings) != 0 || len(r.Applied) != 1 {
		t.Errorf("pv_rev taken as a setting: %+v %v", r, err)
	}
}

func TestParseEnviron(t *testing.T) {
	got := ParseEnviron([]string{"HOME=/root", "PV_LOG_LEVEL=3", "pv_wdt_mode=always", "PH_X=", "PV_", "PV_NOEQ", "PATH=/bin", "PVX=1"})
	want := []Pair{{"PV_LOG_LEVEL", "3", 0}, {"pv_wdt_mode", "always", 0}, {"PH_X", "", 0}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}
