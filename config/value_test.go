package config

import (
	"errors"
	"strings"
	"testing"
)

func TestSetValues(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		in    string
		want  string // normalised value; "" with bad=true means refused
		bad   bool
		inMsg string // expected in the refusal message
	}{
		{"int", PVLogLevel, "3", "3", false, ""},
		{"int spaces and sign", PVLogLevel, " +4 ", "4", false, ""},
		{"int above range", PVLogLevel, "6", "", true, "want 0..5"},
		{"int negative", PVRevisionRetries, "-1", "", true, "want 0.."},
		{"int not a number", PVLogLevel, "debug", "", true, "decimal integer"},
		{"int overflow", PVRevisionRetries, "99999999999999999999", "", true, "decimal integer"},
		{"port range", PHCredsPort, "0", "", true, "want 1..65535"},
		{"port", PHCredsPort, "8443", "8443", false, ""},
		{"percent", PVStorageGCReserved, "101", "", true, "want 0..100"},
		{"threshold percent", PVStorageGCThreshold, "-1", "", true, "want 0..100"},
		{"defer time", PVStorageGCDeferTime, "120", "120", false, ""},
		{"defer time with unit", PVStorageGCDeferTime, "10m", "", true, "seconds"},
		{"size bytes", PVLogMaxSize, "1048576", "1048576", false, ""},
		{"size with suffix", PVLogMaxSize, "1M", "", true, "bytes"},
		{"seconds", PVUpdaterCommitDelay, "0", "0", false, ""},
		{"seconds with unit", PVUpdaterCommitDelay, "30s", "", true, "seconds"},
		{"bool 1", PVDebugSSH, "1", "1", false, ""},
		{"bool 0", PVDebugSSH, "0", "0", false, ""},
		{"bool strtol non-zero", PVDebugSSH, "7", "1", false, ""},
		{"bool true", PVDebugSSH, "TRUE", "1", false, ""},
		{"bool false", PVDebugSSH, "false", "0", false, ""},
		{"bool yes", PVDebugSSH, "yes", "", true, "want 0 or 1"},
		{"bool empty", PVDebugSSH, "", "", true, "want 0 or 1"},
		{"enum", PVBootloaderType, "rpiab", "rpiab", false, ""},
		{"enum case", PVBootloaderType, "GRUB", "grub", false, ""},
		{"enum ours", PVBootloaderType, "uboot-env", "uboot-env", false, ""},
		{"enum appengine bootloader", PVBootloaderType, "appengine", "appengine", false, ""},
		{"enum unknown", PVBootloaderType, "lilo", "", true, "want one of uboot, uboot-pvk, grub"},
		{"init mode", PVSystemInitMode, "appengine", "appengine", false, ""},
		{"init mode bad", PVSystemInitMode, "docker", "", true, "embedded, standalone, appengine"},
		{"wdt mode", PVWDTMode, "startup", "startup", false, ""},
		{"wdt mode bad", PVWDTMode, "on", "", true, "disabled, shutdown, startup, always"},
		{"secureboot", PVSecurebootMode, "strict", "strict", false, ""},
		{"secureboot bad", PVSecurebootMode, "paranoid", "", true, "disabled, audit, lenient, strict"},
		{"path", PVLogDir, "/data/logs/", "/data/logs/", false, ""},
		{"path relative", PVLogDir, "logs", "", true, "absolute path"},
		{"name", PVPolicy, "factory", "factory", false, ""},
		{"name empty", PVPolicy, "", "", false, ""},
		{"name path", PVPolicy, "../etc/passwd", "", true, "bare name"},
		{"name slash", PVOEMName, "a/b", "", true, "bare name"},
		{"name dotdot", PVOEMName, "..", "", true, "'..'"},
		{"name dot", PVOEMName, ".", "", true, "'..'"},
		{"ipv4", PVNetBrAddress4, "192.168.1.1", "192.168.1.1", false, ""},
		{"ipv4 v6", PVNetBrAddress4, "::1", "", true, "IPv4"},
		{"ipv4 junk", PVNetBrMask4, "255.255.255", "", true, "IPv4"},
		{"list", PVLogServerOutputs, "singlefile, stdout", "singlefile,stdout,update", false, ""},
		{"list order and dups", PVLogServerOutputs, "update,filetree,filetree", "filetree,update", false, ""},
		{"list empty", PVLogServerOutputs, "", "update", false, ""},
		{"list unknown", PVLogServerOutputs, "filetree,syslog", "", true, `"syslog" is not one of`},
		{"string", PHCredsHost, "hub.example.com", "hub.example.com", false, ""},
		{"string newline", PHCredsHost, "a\nb", "", true, "line break"},
		{"string NUL", PVNetBrDev, "br\x000", "", true, "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New()
			before, _ := c.Get(tt.key)
			_, err := c.Set(tt.key, tt.in, LevelEnv)
			got, _ := c.Get(tt.key)
			if tt.bad {
				if !errors.Is(err, ErrBadValue) {
					t.Fatalf("err = %v, want ErrBadValue", err)
				}
				var se *SetError
				if !errors.As(err, &se) || se.Key != tt.key || se.Level != LevelEnv || se.Value != tt.in {
					t.Errorf("SetError = %+v", se)
				}
				msg := err.Error()
				for _, part := range []string{tt.key, `"env"`, tt.inMsg} {
					if !strings.Contains(msg, part) {
						t.Errorf("message %q lacks %q", msg, part)
					}
				}
				if got != before {
					t.Errorf("refused write changed %+v to %+v", before, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got.Value != tt.want || got.Level != LevelEnv {
				t.Errorf("Get = %+v, want %q at env", got, tt.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"factory", "default", "my-policy_2", "v1.2"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "/abs", "..", "a..b", ".", `a\b`, " x"} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) = nil", bad)
		}
	}
}
