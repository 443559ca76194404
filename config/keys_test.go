package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestReferenceKeyTable pins every key of reference §9.2 (and ours) to its
// default and allowed levels, so a table edit cannot drift silently.
func TestReferenceKeyTable(t *testing.T) {
	pvOEMRun := AllowPV | LevelOEM | AllowRun
	phOEMRun := AllowPH | LevelOEM | AllowRun
	pvOEM := AllowPV | LevelOEM
	phOEM := AllowPH | LevelOEM
	want := []struct {
		key     string
		def     string
		allowed Level
		kind    Kind
	}{
		{"PV_UPDATER_COMMIT_DELAY", "25", pvOEMRun, KindSeconds},
		{"PV_UPDATER_GOALS_TIMEOUT", "120", pvOEMRun, KindSeconds},
		{"PH_UPDATER_NETWORK_TIMEOUT", "120", phOEMRun, KindSeconds},
		{"PH_UPDATER_INTERVAL", "60", phOEMRun, KindSeconds},
		{"PV_REVISION_RETRIES", "10", pvOEMRun, KindInt},
		{"PV_UPDATER_USE_TMP_OBJECTS", "0", pvOEMRun, KindBool},
		{"PV_LOG_LEVEL", "0", pvOEMRun, KindInt},
		{"PV_LOG_SERVER_OUTPUTS", "filetree,update", pvOEMRun, KindList},
		{"PV_LOG_MAXSIZE", "2097152", pvOEMRun, KindSize},
		{"PV_LOG_DIR_MAXSIZE", "16777216", pvOEMRun, KindSize},
		{"PV_LOG_ROTATE_FACTOR", "5", pvOEMRun, KindInt},
		{"PV_LOG_HYSTERESIS_FACTOR", "4", pvOEMRun, KindInt},
		{"PV_LOG_DIR", "/storage/logs/", AllowPV, KindPath},
		{"PV_LXC_LOG_LEVEL", "2", pvOEM, KindInt},
		{"PV_LOG_LOGGERS", "1", pvOEM, KindBool},
		{"PV_LOG_CAPTURE", "1", pvOEM, KindBool},
		{"PV_LOG_CAPTURE_DMESG", "1", pvOEM, KindBool},
		{"PV_BOOTLOADER_TYPE", "uboot", AllowPV, KindEnum},
		{"PV_BOOTLOADER_MTD_ONLY", "0", AllowPV, KindBool},
		{"PV_BOOTLOADER_UBOOTAB_A_NAME", "fitA", AllowPV, KindString},
		{"PV_BOOTLOADER_UBOOTAB_B_NAME", "fitB", AllowPV, KindString},
		{"PV_SYSTEM_INIT_MODE", "embedded", AllowPV, KindEnum},
		{"PV_SYSTEM_RUNDIR", "/run/pantavisor/pv", AllowPV, KindPath},
		{"PV_SYSTEM_CONFDIR", "/configs", AllowPV, KindPath},
		{"PV_SYSTEM_LIBDIR", "/lib", AllowPV, KindPath},
		{"PV_SYSTEM_ETCPANTAVISORDIR", "/etc/pantavisor", AllowPV, KindPath},
		{"PV_CONTROL_REMOTE", "1", pvOEM, KindBool},
		{"PV_CONTROL_REMOTE_ALWAYS", "0", pvOEM, KindBool},
		{"PV_DEBUG_SHELL", "1", AllowPV, KindBool},
		{"PV_DEBUG_SSH", "1", pvOEMRun, KindBool},
		{"PV_SECUREBOOT_MODE", "lenient", AllowPV, KindEnum},
		// Upstream's, not in the reference's table.
		{"PV_SECUREBOOT_TRUSTSTORE", "ca-certificates", AllowPV, KindName},
		{"PV_SECUREBOOT_OEM_TRUSTSTORE", "ca-oem-certificates", AllowPV, KindName},
		{"PV_WDT_MODE", "shutdown", AllowPV, KindEnum},
		{"PV_WDT_TIMEOUT", "15", AllowPV, KindSeconds},
		{"PV_STORAGE_GC_RESERVED", "5", pvOEMRun, KindInt},
		{"PV_STORAGE_GC_THRESHOLD", "0", pvOEMRun, KindInt},
		// Upstream's, not in the reference's table.
		{"PV_STORAGE_GC_THRESHOLD_DEFERTIME", "600", pvOEMRun, KindSeconds},
		{"PV_STORAGE_WAIT", "5", AllowPV, KindSeconds},
		{"PV_NET_BRDEV", "lxcbr0", pvOEM, KindString},
		{"PV_NET_BRADDRESS4", "10.0.3.1", pvOEM, KindIPv4},
		{"PV_NET_BRMASK4", "255.255.255.0", pvOEM, KindIPv4},
		{"PH_CREDS_HOST", "api.pantahub.com", phOEM, KindString},
		{"PH_CREDS_PORT", "443", phOEM, KindInt},
		// Ours.
		{"PV_AUTO_RECOVERY_MAX_DELAY", "300", pvOEMRun, KindSeconds},
		{"PV_POLICY", "", AllowPV, KindName},
		{"PV_OEM_NAME", "", AllowPV, KindName},
		{"PV_STORAGE_MNTPOINT", "/storage", AllowPV, KindPath},
		{"PV_STORAGE_DEVICE", "", AllowPV, KindString},
		{"PV_STORAGE_FSTYPE", "ext4", AllowPV, KindString},
		{"PV_NET_ISOLATION", "1", pvOEM, KindBool},
		{"PV_NET_IPTABLES", "auto", pvOEM, KindEnum},
	}
	keys := Keys()
	if len(keys) != len(want) {
		t.Errorf("%d keys registered, want %d", len(keys), len(want))
	}
	c := New()
	for _, w := range want {
		t.Run(w.key, func(t *testing.T) {
			k, ok := Lookup(w.key)
			if !ok {
				t.Fatal("not registered")
			}
			if k.Default != w.def || k.Allowed != w.allowed || k.Kind != w.kind {
				t.Errorf("got default %q allowed %v kind %v; want %q, %v, %v",
					k.Default, k.Allowed, k.Kind, w.def, w.allowed, w.kind)
			}
			v, _ := c.Get(w.key)
			if v.Value != w.def || v.Level != LevelDefault {
				t.Errorf("New().Get = %+v, want %q at default", v, w.def)
			}
		})
	}
	if !slices.IsSortedFunc(keys, func(a, b KeyInfo) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("Keys() not sorted")
	}
}

// TestDefaultsValid keeps New's panic unreachable: every default passes
// its own key's validation unchanged (defaults are written normalised).
func TestDefaultsValid(t *testing.T) {
	for _, k := range table {
		p, err := k.normalize(k.Default)
		if err != nil {
			t.Errorf("%s: default %q: %v", k.Name, k.Default, err)
			continue
		}
		if p.s != k.Default {
			t.Errorf("%s: default %q normalises to %q", k.Name, k.Default, p.s)
		}
		if k.Kind.numeric() && (k.Max <= k.Min || k.Max > maxInt) {
			t.Errorf("%s: bad range %d..%d", k.Name, k.Min, k.Max)
		}
	}
}

func TestAliases(t *testing.T) {
	seen := map[string]string{}
	for _, k := range table {
		if len(k.Aliases) == 0 {
			t.Errorf("%s has no alias", k.Name)
		}
		if !slices.Contains(k.Aliases, schemeAlias(k.Name)) {
			t.Errorf("%s lacks its scheme alias %q", k.Name, schemeAlias(k.Name))
		}
		for _, a := range k.Aliases {
			la := strings.ToLower(a)
			if other, dup := seen[la]; dup {
				t.Errorf("alias %q of %s also names %s", a, k.Name, other)
			}
			seen[la] = k.Name
			if _, ok := byName[strings.ToUpper(a)]; ok {
				t.Errorf("alias %q collides with a key name", a)
			}
		}
	}
	tests := []struct{ alias, key string }{
		{"log.level", PVLogLevel},
		{"updater.commit.delay", PVUpdaterCommitDelay},
		{"bootloader.type", PVBootloaderType},
		{"storage.gc.reserved", PVStorageGCReserved},
		{"system.init.mode", PVSystemInitMode},
		{"wdt.mode", PVWDTMode},
		{"creds.host", PHCredsHost},
		{"creds.port", PHCredsPort},
		{"policy", PVPolicy},
		{"updater.network_timeout", PHUpdaterNetworkTimeout},
		{"updater.network.timeout", PHUpdaterNetworkTimeout},
		{"updater.use_tmp_objects", PVUpdaterUseTmpObjects},
		{"bootloader.mtd_only", PVBootloaderMTDOnly},
		{"Log.Level", PVLogLevel},
		{"auto.recovery.max.delay", PVAutoRecoveryMaxDelay},
	}
	for _, tt := range tests {
		k, ok := Lookup(tt.alias)
		if !ok || k.Name != tt.key {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.alias, k.Name, ok, tt.key)
		}
	}
	// GET /config keeps upstream's spelling where it differs from the scheme.
	if k, _ := Lookup(PHUpdaterNetworkTimeout); k.Aliases[0] != "updater.network_timeout" {
		t.Errorf("first alias = %q", k.Aliases[0])
	}
}

func TestKeysReturnsCopies(t *testing.T) {
	ks := Keys()
	for i := range ks {
		if ks[i].Name == PVBootloaderType {
			ks[i].Values[0] = "mutated"
			ks[i].Aliases[0] = "mutated"
		}
	}
	k, _ := Lookup(PVBootloaderType)
	if k.Values[0] != "uboot" || k.Aliases[0] != "bootloader.type" {
		t.Error("Keys() exposed the table")
	}
}

var accessorCall = regexp.MustCompile(`\.(Int|Bool|String|Duration|Get|Set|SetMeta|SetCommand|SetArgs)\(\s*"(P[VH]_[A-Za-z0-9_]+)"`)

// TestKeyNamesUsedAreRegistered makes an unknown key name, which the
// accessors turn into a silent zero, a test failure: every PV_/PH_ string
// constant of this package and every literal key passed to a Config
// method anywhere in the module must be registered.
func TestKeyNamesUsedAreRegistered(t *testing.T) {
	fset := token.NewFileSet()
	pkgFiles, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range pkgFiles {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Only constants name keys; other literals (level identifiers
		// such as "PV_CONF") merely look like them.
		ast.Inspect(file, func(n ast.Node) bool {
			if d, ok := n.(*ast.GenDecl); ok && d.Tok != token.CONST {
				return false
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || !regexp.MustCompile(`^P[VH]_[A-Z0-9_]+[A-Z0-9]$`).MatchString(s) {
				return true
			}
			if s == "PV_SYSCTL_" || strings.HasPrefix(s, "PV_SYSCTL") {
				return true
			}
			if _, ok := byName[s]; !ok {
				t.Errorf("%s: %q is not a registered key", fset.Position(lit.Pos()), s)
			}
			return true
		})
	}

	root := ".."
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Skip("module root not found")
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // other packages are being edited concurrently
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "vendor" || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, m := range accessorCall.FindAllSubmatch(src, -1) {
			name := string(m[2])
			if _, _, ok := resolve(name); !ok && !strings.HasPrefix(path, filepath.Join(root, "config")+string(filepath.Separator)) {
				t.Errorf("%s: %s(%q): unregistered key", path, m[1], name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
