package config

import (
	"encoding/json"
	"testing"
)

func TestLevelBitsAndNames(t *testing.T) {
	tests := []struct {
		level Level
		bit   uint16
		name  string
	}{
		{LevelDefault, 0, "default"},
		{LevelArgs, 1, "args"},
		{LevelPVConf, 2, "pv conf file"},
		{LevelPHConf, 4, "ph conf file"},
		{LevelPHClient, 8, "ph client"},
		{LevelPolicy, 16, "policy"},
		{LevelOEM, 32, "oem config"},
		{LevelPVCmdline, 64, "pv cmdline"},
		{LevelPHCmdline, 128, "ph cmdline"},
		{LevelEnv, 256, "env"},
		{LevelMeta, 512, "metadata"},
		{LevelCmd, 1024, "command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if uint16(tt.level) != tt.bit {
				t.Errorf("value = %d, want %d", tt.level, tt.bit)
			}
			if got := tt.level.String(); got != tt.name {
				t.Errorf("String() = %q, want %q", got, tt.name)
			}
			back, err := ParseLevel(tt.name)
			if err != nil || back != tt.level {
				t.Errorf("ParseLevel(%q) = %v, %v; want %v", tt.name, back, err, tt.level)
			}
			if !tt.level.single() {
				t.Errorf("single() = false")
			}
		})
	}
}

func TestLevelGroups(t *testing.T) {
	if AllowPV != 2|16|64|256 {
		t.Errorf("AllowPV = %d", AllowPV)
	}
	if AllowPH != 4|16|128|256 {
		t.Errorf("AllowPH = %d", AllowPH)
	}
	if AllowRun != 512|1024 {
		t.Errorf("AllowRun = %d", AllowRun)
	}
	if got, want := AllowRun.String(), "metadata|command"; got != want {
		t.Errorf("AllowRun.String() = %q, want %q", got, want)
	}
	if got := Level(1 << 12).String(); got != "level(0x1000)" {
		t.Errorf("undefined bit String() = %q", got)
	}
	if AllowPV.single() || Level(1<<12).single() {
		t.Error("a mask or an undefined bit counts as a single level")
	}
}

func TestParseLevelForms(t *testing.T) {
	tests := []struct {
		in   string
		want Level
		ok   bool
	}{
		{"PV_CONF", LevelPVConf, true},
		{"pv_conf", LevelPVConf, true},
		{" Oem Config ", LevelOEM, true},
		{"META", LevelMeta, true},
		{"cmd", LevelCmd, true},
		{"DEFAULT", LevelDefault, true},
		{"pv conf", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseLevel(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestLevelJSON(t *testing.T) {
	b, err := json.Marshal(Value{Key: PVLogLevel, Value: "3", Level: LevelPVConf})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"key":"PV_LOG_LEVEL","value":"3","modified":"pv conf file"}`; got != want {
		t.Errorf("json = %s, want %s", got, want)
	}
	var v Value
	if err := json.Unmarshal(b, &v); err != nil || v.Level != LevelPVConf {
		t.Errorf("round trip = %+v, %v", v, err)
	}
}
