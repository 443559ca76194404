package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const pvConf = `# device defaults
PV_LOG_LEVEL=1
log.maxsize="1000"
PV_BOOTLOADER_TYPE=grub
PV_LOG_DIR=/data/logs/
pv_updater_commit_delay=30
PV_WDT_MODE=disabled
PV_POLICY=factory
PV_OEM_NAME=acme
PV_LXC_LOG_LEVEL=3
PH_CREDS_HOST=conf.example
PV_WDT_TIMEOUT=soon
PV_NO_SUCH_KEY=1
PV_SYSCTL_KERNEL_PANIC=5
`

const policyFactory = `PV_LOG_LEVEL=2
PV_UPDATER_COMMIT_DELAY=40
PV_STORAGE_GC_RESERVED=10
`

const oemFactory = `PV_LOG_LEVEL=3
PV_LOG_DIR=/oem/logs/
PV_STORAGE_GC_RESERVED=20
PH_CREDS_HOST=oem.example
PV_LXC_LOG_LEVEL=4
PV_NET_BRDEV=oembr0
`

const cmdline = `console=ttyS0 pv_log.level=4 ph_creds.host="cmd.example" pv_wdt_mode=always quiet pv_storage.gc.reserved=30 ph_log.level=5`

var environ = []string{"HOME=/root", "PV_UPDATER_COMMIT_DELAY=50", "pv_debug_ssh=0", "PV_LOG_DIR=/env/logs/"}

// step is one layer applied in TestLayers, with the refusals it must
// produce (canonical key or entry name → sentinel) and how many legacy
// translations it must warn about.
type step struct {
	name      string
	run       func(c *Config) (Report, error)
	err       error // sentinel of the loader's own error, nil for none
	refused   map[string]error
	warnings  int
	sysctl    []string
	unchanged bool // the step must change nothing at all
}

func single(warning string, err error) (Report, error) {
	var r Report
	if warning != "" {
		r.Warnings = append(r.Warnings, warning)
	}
	if err != nil {
		r.Refused = append(r.Refused, err)
	}
	return r, nil
}

// TestLayers drives every layer in upstream's order (default → pv_conf →
// policy → OEM → cmdline → env → user-meta → command), interleaved with
// writes that must be refused, then checks which layer won each key.
func TestLayers(t *testing.T) {
	steps := []step{
		{
			name: "pv conf file",
			run: func(c *Config) (Report, error) {
				return c.LoadFile(LevelPVConf, "/etc/pantavisor.config", []byte(pvConf))
			},
			refused: map[string]error{
				PHCredsHost:      ErrLevelNotAllowed, // a PH key in the PV file
				PVWDTTimeout:     ErrBadValue,
				"PV_NO_SUCH_KEY": ErrUnknownKey,
			},
			warnings: 1, // log.maxsize
			sysctl:   []string{"PV_SYSCTL_KERNEL_PANIC"},
		},
		{
			name: "malformed policy applies nothing",
			run: func(c *Config) (Report, error) {
				return c.LoadPolicy("factory", []byte("PV_LOG_LEVEL=5\nthis line is broken\n"))
			},
			err:       ErrSyntax,
			unchanged: true,
		},
		{
			name:      "policy name that is a path",
			run:       func(c *Config) (Report, error) { return c.LoadPolicy("../factory", []byte(policyFactory)) },
			err:       errors.New("any"),
			unchanged: true,
		},
		{
			name: "policy",
			run:  func(c *Config) (Report, error) { return c.LoadPolicy("factory", []byte(policyFactory)) },
		},
		{
			name: "oem config",
			run: func(c *Config) (Report, error) {
				p, ok := c.OEMConfigPath("/storage/trails/1")
				if !ok || p != filepath.Join("/storage/trails/1", "acme", "factory.config") {
					return Report{}, fmt.Errorf("OEMConfigPath = %q, %v", p, ok)
				}
				return c.LoadFile(LevelOEM, p, []byte(oemFactory))
			},
			refused: map[string]error{PVLogDir: ErrLevelNotAllowed},
		},
		{
			name: "cmdline",
			run:  func(c *Config) (Report, error) { return c.LoadCmdline(cmdline), nil },
			refused: map[string]error{
				PVLogLevel: ErrLevelNotAllowed, // ph_log.level: PV key at PH_CMDLINE
			},
			warnings: 4, // log.level, creds.host, storage.gc.reserved, log.level again
		},
		{
			name: "env",
			run:  func(c *Config) (Report, error) { return c.LoadEnv(environ), nil },
		},
		{
			name: "pv conf file again is lower than env and cmdline",
			run: func(c *Config) (Report, error) {
				return c.LoadFile(LevelPVConf, "pantavisor.config", []byte("PV_UPDATER_COMMIT_DELAY=1\nPV_WDT_MODE=startup\n"))
			},
			refused:   map[string]error{PVUpdaterCommitDelay: ErrLowerLevel, PVWDTMode: ErrLowerLevel},
			unchanged: true,
		},
		{
			name: "user-meta",
			run: func(c *Config) (Report, error) {
				return c.LoadMeta(map[string]string{
					"PV_LOG_LEVEL":            "5",
					"PV_BOOTLOADER_TYPE":      "uboot", // PV only: not at META
					"debug.ssh":               "true",  // legacy alias
					"pvr-sdk.autostart":       "yes",   // not configuration
					"PV_UPDATER_COMMIT_DELAY": "abc",
					"sysctl.kernel.panic":     "1", // sysctl is not allowed at META
				}), nil
			},
			refused: map[string]error{
				PVBootloaderType:      ErrLevelNotAllowed,
				"pvr-sdk.autostart":   ErrUnknownKey,
				PVUpdaterCommitDelay:  ErrBadValue,
				"sysctl.kernel.panic": ErrLevelNotAllowed,
			},
			warnings: 1,
		},
		{
			name: "command, case-insensitive key",
			run:  func(c *Config) (Report, error) { return single(c.SetCommand("pv_storage_gc_reserved", "40")) },
		},
		{
			name: "user-meta below command",
			run:  func(c *Config) (Report, error) { return single(c.SetMeta("PV_STORAGE_GC_RESERVED", "50")) },
			refused: map[string]error{
				PVStorageGCReserved: ErrLowerLevel,
			},
			unchanged: true,
		},
		{
			name: "new revision's oem config",
			run: func(c *Config) (Report, error) {
				return c.LoadFile(LevelOEM, "acme/factory.config", []byte("PV_LXC_LOG_LEVEL=6\nPV_LOG_LEVEL=1\nPV_NET_BRDEV=newbr0\n"))
			},
			refused: map[string]error{PVLogLevel: ErrLowerLevel},
		},
		{
			name: "malformed oem config applies nothing",
			run: func(c *Config) (Report, error) {
				return c.LoadFile(LevelOEM, "acme/factory.config", []byte("PV_NET_BRDEV=x\nPV_LXC_LOG_LEVEL='7\n"))
			},
			err:       ErrSyntax,
			unchanged: true,
		},
	}

	c := New()
	for _, s := range steps {
		before := c.All()
		r, err := s.run(c)
		switch {
		case s.err == nil && err != nil:
			t.Errorf("%s: err = %v", s.name, err)
		case s.err != nil && err == nil:
			t.Errorf("%s: err = nil, want one", s.name)
		case s.err == ErrSyntax && !errors.Is(err, ErrSyntax):
			t.Errorf("%s: err = %v, want ErrSyntax", s.name, err)
		}
		got := map[string]error{}
		for _, e := range r.Refused {
			var se *SetError
			if !errors.As(e, &se) {
				t.Errorf("%s: refusal %v is not a *SetError", s.name, e)
				continue
			}
			got[se.Key] = se.Err
		}
		if len(got) != len(s.refused) {
			t.Errorf("%s: refused %v, want %v", s.name, r.Refused, s.refused)
		}
		for k, want := range s.refused {
			if !errors.Is(got[k], want) {
				t.Errorf("%s: %s refused with %v, want %v", s.name, k, got[k], want)
			}
		}
		if len(r.Warnings) != s.warnings {
			t.Errorf("%s: warnings %q, want %d", s.name, r.Warnings, s.warnings)
		}
		var sysctl []string
		for _, p := range r.Sysctl {
			sysctl = append(sysctl, p.Key)
		}
		if !slices.Equal(sysctl, s.sysctl) {
			t.Errorf("%s: sysctl %v, want %v", s.name, sysctl, s.sysctl)
		}
		if s.unchanged && !slices.Equal(before, c.All()) {
			t.Errorf("%s: changed the configuration", s.name)
		}
	}

	wins := []struct {
		key   string
		value string
		level Level
	}{
		{PVLogLevel, "5", LevelMeta},
		{PVLogMaxSize, "1000", LevelPVConf}, // set through its alias
		{PVBootloaderType, "grub", LevelPVConf},
		{PVLogDir, "/env/logs/", LevelEnv},
		{PVUpdaterCommitDelay, "50", LevelEnv},
		{PVWDTMode, "always", LevelPVCmdline},
		{PVWDTTimeout, "15", LevelDefault},
		{PVPolicy, "factory", LevelPVConf},
		{PVOEMName, "acme", LevelPVConf},
		{PVLXCLogLevel, "6", LevelOEM},
		{PHCredsHost, "cmd.example", LevelPHCmdline},
		{PVStorageGCReserved, "40", LevelCmd},
		{PVDebugSSH, "1", LevelMeta},
		{PVNetBrDev, "newbr0", LevelOEM},
		{PVSystemInitMode, "embedded", LevelDefault},
		{PVLogServerOutputs, "filetree,update", LevelDefault},
	}
	for _, w := range wins {
		t.Run(w.key, func(t *testing.T) {
			got, ok := c.Get(strings.ToLower(w.key))
			want := Value{Key: w.key, Value: w.value, Level: w.level}
			if !ok || got != want {
				t.Errorf("Get = %+v, want %+v", got, want)
			}
		})
	}
}

// TestLoadBoot checks the boot-time loader against the same sources as
// TestLayers and its per-source all-or-nothing rule.
func TestLoadBoot(t *testing.T) {
	var asked []string
	policies := func(name string) ([]byte, error) {
		asked = append(asked, name)
		if name == "factory" {
			return []byte(policyFactory), nil
		}
		return nil, errors.New("no such policy")
	}
	t.Run("all sources", func(t *testing.T) {
		asked = nil
		c := New()
		r, err := c.LoadBoot(BootSources{ConfName: "/etc/pantavisor.config", Conf: []byte(pvConf), Cmdline: cmdline, Environ: environ, Policy: policies})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(asked, []string{"factory"}) {
			t.Errorf("policies asked %v", asked)
		}
		for _, w := range []Value{
			{PVLogLevel, "4", LevelPVCmdline},
			{PVUpdaterCommitDelay, "50", LevelEnv},
			{PVStorageGCReserved, "30", LevelPVCmdline},
			{PVBootloaderType, "grub", LevelPVConf},
			{PHCredsHost, "cmd.example", LevelPHCmdline},
		} {
			if got, _ := c.Get(w.Key); got != w {
				t.Errorf("Get(%s) = %+v, want %+v", w.Key, got, w)
			}
		}
		if len(r.Refused) != 4 || len(r.Sysctl) != 1 {
			t.Errorf("report: refused %v sysctl %v", r.Refused, r.Sysctl)
		}
		if !strings.Contains(r.Refused[0].Error(), "/etc/pantavisor.config:11") {
			t.Errorf("refusal lacks file and line: %v", r.Refused[0])
		}
	})
	// Upstream skips a malformed line and applies the rest; all or
	// nothing, the stray line cost the device its bootloader type (the
	// default uboot's file, which a grub device never reads) and its
	// storage device.
	t.Run("malformed lines of the conf are skipped, the rest applies", func(t *testing.T) {
		c := New()
		_, err := c.LoadBoot(BootSources{Conf: []byte("PV_BOOTLOADER_TYPE=grub\nbroken\nPV_STORAGE_DEVICE=/dev/sda2\n[pantavisor]\n"),
			Cmdline: "pv_log_level=2 pv_policy=factory", Policy: policies})
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "line 4") {
			t.Fatalf("err = %v", err)
		}
		if got := c.String(PVBootloaderType); got != "grub" {
			t.Errorf("PV_BOOTLOADER_TYPE = %q, want grub", got)
		}
		if got := c.String(PVStorageDevice); got != "/dev/sda2" {
			t.Errorf("PV_STORAGE_DEVICE = %q, want /dev/sda2", got)
		}
		if c.Int(PVLogLevel) != 2 || c.Int(PVStorageGCReserved) != 10 {
			t.Errorf("cmdline or policy not applied: %d %d", c.Int(PVLogLevel), c.Int(PVStorageGCReserved))
		}
	})
	t.Run("malformed lines of the policy are skipped, the rest applies", func(t *testing.T) {
		c := New()
		bad := func(string) ([]byte, error) { return []byte("PV_LOG_LEVEL=3\nbroken\n"), nil }
		_, err := c.LoadBoot(BootSources{Cmdline: "pv_policy=factory", Policy: bad})
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), `policy "factory"`) {
			t.Fatalf("err = %v", err)
		}
		if c.Int(PVLogLevel) != 3 {
			t.Errorf("policy not applied: %d", c.Int(PVLogLevel))
		}
	})
	// Upstream applies pantavisor.config before it reads the policy: the
	// file may place the policies. They were looked for under the
	// default directory.
	t.Run("policy directory from pantavisor.config", func(t *testing.T) {
		c := New()
		var dir string
		_, err := c.LoadBoot(BootSources{Conf: []byte("PV_SYSTEM_ETCPANTAVISORDIR=/opt/pv/etc\nPV_POLICY=prod\n"),
			Policy: func(string) ([]byte, error) {
				dir = c.String(PVSystemEtcPantavisorDir)
				return []byte("PV_LOG_LEVEL=3\n"), nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		if dir != "/opt/pv/etc" || c.Int(PVLogLevel) != 3 {
			t.Errorf("policy looked up under %q (level %d), want /opt/pv/etc", dir, c.Int(PVLogLevel))
		}
	})
	t.Run("unreadable policy", func(t *testing.T) {
		c := New()
		_, err := c.LoadBoot(BootSources{Environ: []string{"PV_POLICY=missing", "PV_LOG_LEVEL=3"}, Policy: policies})
		if err == nil || !strings.Contains(err.Error(), `"missing"`) {
			t.Fatalf("err = %v", err)
		}
		if c.Int(PVLogLevel) != 3 || c.String(PVPolicy) != "missing" {
			t.Error("env not applied")
		}
	})
	t.Run("policy path rejected", func(t *testing.T) {
		asked = nil
		c := New()
		_, err := c.LoadBoot(BootSources{Cmdline: "pv_policy=../../tmp/evil", Policy: policies})
		if err == nil || len(asked) != 0 {
			t.Fatalf("err = %v, asked %v", err, asked)
		}
		if c.String(PVPolicy) != "" {
			t.Errorf("PV_POLICY = %q", c.String(PVPolicy))
		}
	})
}

func TestPolicyName(t *testing.T) {
	conf := []Pair{{Key: "PV_POLICY", Value: "fromconf"}}
	env := []Pair{{Key: "PV_POLICY", Value: "fromenv"}}
	tests := []struct {
		name    string
		conf    []Pair
		cmdline string
		env     []Pair
		want    string
		wantErr bool
	}{
		{"none", nil, "", nil, "", false},
		{"conf", conf, "", nil, "fromconf", false},
		{"conf alias", []Pair{{Key: "policy", Value: "old"}}, "", nil, "old", false},
		{"env over conf", conf, "", env, "fromenv", false},
		{"cmdline first, as upstream", conf, "pv_policy=fromcmd", env, "fromcmd", false},
		{"cmdline alias form", nil, "pv_PV_POLICY=x", nil, "x", false},
		{"ph_ token ignored", conf, "ph_policy=no", nil, "fromconf", false},
		{"empty is unset", conf, "pv_policy=", nil, "fromconf", false},
		{"last in a source wins", nil, "pv_policy=a pv_policy=b", nil, "b", false},
		{"path rejected, next source", conf, "pv_policy=/etc/x", nil, "fromconf", true},
		{"dotdot rejected", nil, "pv_policy=..", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PolicyName(tt.conf, ParseCmdline(tt.cmdline), tt.env)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("PolicyName = %q, %v; want %q, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSetSemantics(t *testing.T) {
	tests := []struct {
		name     string
		prior    []Value // applied first, must succeed
		key      string
		value    string
		level    Level
		err      error
		warning  bool
		wantVal  string
		wantLvl  Level
		inErrMsg []string
	}{
		{name: "allowed", key: "PV_LOG_LEVEL", value: "3", level: LevelPVConf, wantVal: "3", wantLvl: LevelPVConf},
		{name: "same level rewrites", prior: []Value{{"PV_LOG_LEVEL", "3", LevelOEM}}, key: "PV_LOG_LEVEL", value: "4", level: LevelOEM, wantVal: "4", wantLvl: LevelOEM},
		{name: "lower level refused", prior: []Value{{"PV_LOG_LEVEL", "3", LevelEnv}}, key: "PV_LOG_LEVEL", value: "1", level: LevelPVConf, err: ErrLowerLevel, wantVal: "3", wantLvl: LevelEnv, inErrMsg: []string{"PV_LOG_LEVEL", "pv conf file", "set at env"}},
		{name: "bootloader from meta", key: "PV_BOOTLOADER_TYPE", value: "grub", level: LevelMeta, err: ErrLevelNotAllowed, wantVal: "uboot", wantLvl: LevelDefault, inErrMsg: []string{"PV_BOOTLOADER_TYPE", `"metadata"`, "grub"}},
		{name: "log dir from oem", key: "PV_LOG_DIR", value: "/x/", level: LevelOEM, err: ErrLevelNotAllowed, wantVal: "/storage/logs/", wantLvl: LevelDefault, inErrMsg: []string{"oem config"}},
		{name: "ph key at pv cmdline", key: "PH_CREDS_HOST", value: "h", level: LevelPVCmdline, err: ErrLevelNotAllowed, wantVal: "api.pantahub.com", wantLvl: LevelDefault},
		{name: "default level not settable", key: "PV_LOG_LEVEL", value: "1", level: LevelDefault, err: ErrLevelNotAllowed, wantVal: "0", wantLvl: LevelDefault},
		{name: "mask is not a level", key: "PV_LOG_LEVEL", value: "1", level: AllowPV, err: ErrLevelNotAllowed, wantVal: "0", wantLvl: LevelDefault},
		{name: "unknown key", key: "PV_NOPE", value: "1", level: LevelEnv, err: ErrUnknownKey, inErrMsg: []string{"PV_NOPE"}},
		{name: "alias warns", key: "updater.commit.delay", value: "9", level: LevelMeta, warning: true, wantVal: "9", wantLvl: LevelMeta},
		{name: "alias warns even when refused", key: "bootloader.type", value: "grub", level: LevelMeta, warning: true, err: ErrLevelNotAllowed, wantVal: "uboot", wantLvl: LevelDefault},
		{name: "mixed case", key: "Pv_Wdt_Mode", value: "Always", level: LevelPVCmdline, wantVal: "always", wantLvl: LevelPVCmdline},
		{name: "bad value after higher level", prior: []Value{{"PV_LOG_LEVEL", "2", LevelPolicy}}, key: "PV_LOG_LEVEL", value: "x", level: LevelEnv, err: ErrBadValue, wantVal: "2", wantLvl: LevelPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New()
			for _, p := range tt.prior {
				if _, err := c.Set(p.Key, p.Value, p.Level); err != nil {
					t.Fatal(err)
				}
			}
			warning, err := c.Set(tt.key, tt.value, tt.level)
			if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if (warning != "") != tt.warning {
				t.Errorf("warning = %q", warning)
			}
			for _, s := range tt.inErrMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q lacks %q", err, s)
				}
			}
			if tt.err == ErrUnknownKey {
				return
			}
			if got, _ := c.Get(tt.key); got.Value != tt.wantVal || got.Level != tt.wantLvl {
				t.Errorf("Get = %+v, want %q at %v", got, tt.wantVal, tt.wantLvl)
			}
		})
	}
}

func TestSetArgs(t *testing.T) {
	c := New()
	// PV_SYSTEM_INIT_MODE allows no runtime level, yet appengine forces it.
	if _, err := c.SetArgs(PVSystemInitMode, "appengine"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(PVSystemInitMode); v.Value != "appengine" || v.Level != LevelArgs {
		t.Errorf("Get = %+v", v)
	}
	if _, err := c.SetArgs(PVSystemInitMode, "docker"); !errors.Is(err, ErrBadValue) {
		t.Errorf("bad value err = %v", err)
	}
	// Forced even above a higher level.
	c.Set(PVDebugShell, "0", LevelEnv)
	if _, err := c.SetArgs(PVDebugShell, "1"); err != nil || !c.Bool(PVDebugShell) {
		t.Errorf("SetArgs over env: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	c := New()
	if got := c.Int(PVLogMaxSize); got != 2<<20 {
		t.Errorf("Int(PV_LOG_MAXSIZE) = %d", got)
	}
	if got := c.Duration(PVUpdaterCommitDelay); got != 25*time.Second {
		t.Errorf("Duration(commit delay) = %v", got)
	}
	if got := c.Duration(PVAutoRecoveryMaxDelay); got != 300*time.Second {
		t.Errorf("Duration(auto recovery max delay) = %v", got)
	}
	if got := c.Duration(PVWDTTimeout); got != 15*time.Second {
		t.Errorf("Duration(wdt timeout) = %v", got)
	}
	if !c.Bool(PVControlRemote) || c.Bool(PVControlRemoteAlways) {
		t.Error("Bool defaults wrong")
	}
	if got := c.String(PVBootloaderType); got != "uboot" {
		t.Errorf("String(bootloader) = %q", got)
	}
	if got := c.String(PVDebugSSH); got != "1" {
		t.Errorf("String(bool) = %q", got)
	}
	// Wrong kind or unknown key: zero, no panic.
	if c.Int(PVBootloaderType) != 0 || c.Bool(PVLogLevel) || c.Duration(PVLogLevel) != 0 {
		t.Error("wrong-kind accessor returned non-zero")
	}
	if c.Int("PV_NOPE") != 0 || c.Bool("PV_NOPE") || c.String("PV_NOPE") != "" || c.Duration("PV_NOPE") != 0 {
		t.Error("unknown key accessor returned non-zero")
	}
	if _, ok := c.Get("PV_NOPE"); ok {
		t.Error("Get of unknown key ok")
	}
	if _, ok := c.OEMConfigPath("/t"); ok {
		t.Error("OEMConfigPath without PV_OEM_NAME")
	}
	c.Set(PVOEMName, "acme", LevelPVConf)
	if p, ok := c.OEMConfigPath("/t"); !ok || p != filepath.Join("/t", "acme", "default.config") {
		t.Errorf("OEMConfigPath = %q, %v", p, ok)
	}
}

func TestAllAndConfig2JSON(t *testing.T) {
	c := New()
	c.Set(PVLogLevel, "3", LevelPVConf)
	all := c.All()
	if len(all) != len(table) {
		t.Fatalf("All() has %d entries", len(all))
	}
	if !slices.IsSortedFunc(all, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) }) {
		t.Error("All() not sorted")
	}
	b, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `{"key":"PV_LOG_LEVEL","value":"3","modified":"pv conf file"}`) {
		t.Errorf("config2 JSON lacks the upstream element: %s", b)
	}
	var back []map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back[0]) != 3 {
		t.Errorf("config2 element has fields %v, want key, value, modified", back[0])
	}
}

func TestLegacy(t *testing.T) {
	c := New()
	c.Set(PVBootloaderType, "rpiab", LevelPVConf)
	c.Set(PVLogServerOutputs, "singlefile", LevelPVConf)
	l := c.Legacy()
	if len(l) != len(table) {
		t.Errorf("Legacy has %d keys", len(l))
	}
	tests := []struct {
		alias string
		want  any
	}{
		{"log.level", 0},
		{"bootloader.type", 3}, // upstream BL_RPIAB
		{"log.server.outputs", 2 | 128},
		{"debug.ssh", true},
		{"updater.use_tmp_objects", false},
		{"creds.host", "api.pantahub.com"},
		{"creds.port", 443},
		{"wdt.mode", 1},
		{"secureboot.mode", 2},
		{"system.init.mode", 0},
		{"log.maxsize", 2 << 20},
		{"updater.network_timeout", 120},
		{"policy", ""},
	}
	for _, tt := range tests {
		if got, ok := l[tt.alias]; !ok || got != tt.want {
			t.Errorf("Legacy[%q] = %#v, want %#v", tt.alias, got, tt.want)
		}
	}
	if _, err := json.Marshal(l); err != nil {
		t.Error(err)
	}
}

// TestConcurrent is meant for -race: readers and writers at once.
func TestConcurrent(t *testing.T) {
	c := New()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 200 {
				c.SetMeta(PVLogLevel, fmt.Sprint((i+j)%6))
				c.LoadMeta(map[string]string{PVDebugSSH: "1"})
				c.LoadFile(LevelOEM, "oem", []byte("PV_LXC_LOG_LEVEL=4\n"))
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				_ = c.Int(PVLogLevel)
				_ = c.All()
				_ = c.Legacy()
				_, _ = c.Get(PVDebugSSH)
			}
		}()
	}
	wg.Wait()
	if v, _ := c.Get(PVLogLevel); v.Level != LevelMeta {
		t.Errorf("Get = %+v", v)
	}
}

func TestSysctl(t *testing.T) {
	c := New()
	r := c.LoadCmdline("pv_sysctl.kernel.panic=3 pv_PV_SYSCTL_VM_SWAPPINESS=1")
	if len(r.Sysctl) != 2 || len(r.Refused) != 0 || r.Sysctl[0].Key != "sysctl.kernel.panic" || r.Sysctl[1].Key != "PV_SYSCTL_VM_SWAPPINESS" {
		t.Errorf("cmdline sysctl: %+v", r)
	}
	r = c.LoadCmdline("pv_no_such=1")
	if len(r.Refused) != 1 || !strings.Contains(r.Refused[0].Error(), "pv_no_such") {
		t.Errorf("unknown cmdline key: %v", r.Refused)
	}
	r = c.LoadEnv([]string{"PV_SYSCTL_KERNEL_PANIC=1"})
	if len(r.Sysctl) != 1 {
		t.Errorf("env sysctl: %+v", r)
	}
	r, _ = c.LoadFile(LevelPHConf, "pantahub.config", []byte("PV_SYSCTL_KERNEL_PANIC=1\n"))
	if len(r.Sysctl) != 0 || !errors.Is(r.Err(), ErrLevelNotAllowed) {
		t.Errorf("ph conf sysctl: %+v", r)
	}
}
