package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParseConfigFile checks that no file content panics the parser or the
// loader, that a parse error applies nothing, and that accepted pairs have
// well-formed keys and values without NUL.
func FuzzParseConfigFile(f *testing.F) {
	for _, seed := range []string{
		pvConf, policyFactory, oemFactory, "", "\n\n", "#only\n", "A=\"b\"", "A='", "=x", "A B=1",
		"PV_LOG_LEVEL=3\r\nlog.level = '4'\n", "PV_SYSCTL_KERNEL_PANIC=1\n", "PV_POLICY=../x\n",
		"PV_LOG_SERVER_OUTPUTS=stdout,,update\n", "A=x\x00y",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pairs, err := ParseConfigFile(data)
		c := New()
		before := c.All()
		r, lerr := c.LoadFile(LevelOEM, "fuzz", data)
		if (err == nil) != (lerr == nil) {
			t.Fatalf("ParseConfigFile err %v but LoadFile err %v", err, lerr)
		}
		if err != nil {
			if pairs != nil || !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v with pairs %v", err, pairs)
			}
			if !slices.Equal(before, c.All()) {
				t.Fatal("malformed file changed the configuration")
			}
			return
		}
		for _, p := range pairs {
			if p.Key == "" || !validKeySyntax(p.Key) || strings.ContainsRune(p.Value, 0) || p.Line < 1 {
				t.Fatalf("bad pair %#v", p)
			}
		}
		if n := len(r.Applied) + len(r.Refused) + len(r.Sysctl); n != len(pairs) {
			t.Fatalf("%d pairs but %d outcomes", len(pairs), n)
		}
		checkInvariants(t, c)
	})
}

// FuzzParseCmdline checks that no command line panics the parser or the
// loader and that only pv_/ph_ parameters come out.
func FuzzParseCmdline(f *testing.F) {
	for _, seed := range []string{
		cmdline, "", `"`, `pv_a="x`, `"pv_a=b c" pv_`, "pv_sysctl.kernel.panic=1", "ph_", "pv_=1",
		"PV_LOG_LEVEL=9 pv_policy=../../x pv_oem_name=a/b", "pv_log.level=\t3\n", "softdog.soft_margin=\"1 2\" -- x.y=1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pairs := ParseCmdline(s)
		for _, p := range pairs {
			if !hasPrefixFold(p.Key, pvPrefix) && !hasPrefixFold(p.Key, phPrefix) {
				t.Fatalf("non pv_/ph_ pair %#v", p)
			}
			// Quotes are delimiters and never survive; quoted blanks may.
			if strings.Contains(p.Key+p.Value, `"`) {
				t.Fatalf("quote left in %#v", p)
			}
		}
		for mod, params := range ModuleParams(s) {
			if mod == "" || strings.ContainsAny(mod, "-.") || params == "" {
				t.Fatalf("module %q params %q", mod, params)
			}
		}
		c := New()
		r := c.LoadCmdline(s)
		if n := len(r.Applied) + len(r.Refused) + len(r.Sysctl); n != len(pairs) {
			t.Fatalf("%d pairs but %d outcomes", len(pairs), n)
		}
		for _, v := range r.Applied {
			if v.Level != LevelPVCmdline && v.Level != LevelPHCmdline {
				t.Fatalf("applied at %v", v.Level)
			}
		}
		_, _ = PolicyName(nil, pairs, nil)
		checkInvariants(t, c)
	})
}

// checkInvariants: every effective value is valid for its key and set at
// a level the key allows, and the names stay bare.
func checkInvariants(t *testing.T, c *Config) {
	t.Helper()
	for _, e := range c.All() {
		k, _ := Lookup(e.Key)
		if p, err := k.normalize(e.Value.Value); err != nil || p.s != e.Value.Value {
			t.Fatalf("%s holds %q: %v", e.Key, e.Value.Value, err)
		}
		if e.Level != LevelDefault && e.Allowed&e.Level == 0 {
			t.Fatalf("%s set at disallowed %v", e.Key, e.Level)
		}
	}
	for _, k := range []string{PVPolicy, PVOEMName} {
		if v := c.String(k); v != "" && ValidName(v) != nil {
			t.Fatalf("%s = %q", k, v)
		}
	}
	_ = c.Legacy()
}
