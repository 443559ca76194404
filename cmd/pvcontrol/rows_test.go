package main

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
)

// sampleContainers is a listing as pv-ctrl encodes it: every field set
// somewhere, last exits with and without a time.
func sampleContainers() []messages.ContainerInfo {
	at := time.Date(2026, 12, 5, 19, 30, 0, 123456789, time.FixedZone("", 3600))
	return []messages.ContainerInfo{
		{Name: "app", Group: "app", Status: messages.StatusStarted, StatusGoal: "STARTED", RestartPolicy: "container",
			Pid: 4242, UptimeSecs: 360, AutoRecovery: messages.AutoRecovery{Type: "on-failure", MaxRetries: 3, BackoffFactor: 2, NextRetryAt: &at},
			Roles: []string{"mgmt"}, Provides: []any{map[string]any{"name": "api", "port": 8080.0}}, Consumes: []any{},
			LastExit: &messages.Exit{Code: 1, At: at}, IPv4Address: "10.0.5.2/24", MACAddress: "02:00:0a:00:05:02", Pool: "internal"},
		{Name: "os", Group: "root", Status: messages.StatusStopped, StatusGoal: "STOPPED", RestartPolicy: "system",
			LastExit: &messages.Exit{Signal: 9}, Error: "exit status 137"},
		{Name: "idle", Group: "platform", Status: "INSTALLED"},
	}
}

// shownFields is what the listing shows of each container.
func shownFields(cs []messages.ContainerInfo) []messages.ContainerInfo {
	out := []messages.ContainerInfo{}
	for _, c := range cs {
		out = append(out, messages.ContainerInfo{Name: c.Name, Group: c.Group, Status: c.Status, StatusGoal: c.StatusGoal,
			RestartPolicy: c.RestartPolicy, Pid: c.Pid, UptimeSecs: c.UptimeSecs, LastExit: c.LastExit})
	}
	return out
}

// shown reports whether the JSON field path (from an UnmarshalTypeError)
// is in the table.
func shown(field string) bool {
	name, _, _ := strings.Cut(field, ".")
	switch name {
	case "name", "group", "status", "status_goal", "restart_policy", "pid", "uptime_secs", "last_exit":
		return true
	}
	return false
}

// TestScanContainers: pv-ctrl's own answer is read by the one-pass scan,
// not handed to encoding/json, and gives what encoding/json gives.
func TestScanContainers(t *testing.T) {
	body, err := json.Marshal(sampleContainers())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{string(body), "[]", " [ ] \n"} {
		got, ok := scanContainers([]byte(in))
		if !ok {
			t.Fatalf("the scan gave up on %s", in)
		}
		var want []messages.ContainerInfo
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, shownFields(want)) {
			t.Errorf("scan of %s:\n got %+v\nwant %+v", in, got, shownFields(want))
		}
	}
}

// TestScanGivesUp: what the scan leaves to encoding/json, and that
// decodeContainers then still decodes it or reports its error.
func TestScanGivesUp(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{`[{"name":"a\u00e9"}]`, ""},          // an escape
		{`[{"NAME":"a"}]`, ""},                // a case-folded key
		{"[{\"name\":\"caf\xc3\xa9\"}]", ""},  // UTF-8
		{`[{"pid":null}]`, ""},                // null for a number
		{`[{"last_exit":{"time":null}}]`, ""}, // null for a time
		{`[{"pid":1.5}]`, "cannot unmarshal number 1.5"},
		{`[{"name":"a"}] x`, "invalid character 'x'"},
		{`[{"x":[1,2,{"y":tru}]}]`, "invalid character"},
		{`{"name":"a"}`, "cannot unmarshal object"},
		{strings.Repeat("[", 2000), "unexpected end"},
	} {
		if _, ok := scanContainers([]byte(c.in)); ok {
			t.Errorf("%.40s: scanned, want it left to encoding/json", c.in)
			continue
		}
		_, err := decodeContainers([]byte(c.in))
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%.40s: error %v, want %q", c.in, err, c.err)
		}
	}
}

// FuzzDecodeContainers: whenever the scan takes a body, encoding/json
// takes it too and reads the same table out of it. The one difference
// allowed: a field the table does not show, with a value of the wrong
// type, is an error for encoding/json and skipped by the scan. A shown
// one is never.
func FuzzDecodeContainers(f *testing.F) {
	body, _ := json.Marshal(sampleContainers())
	f.Add(body)
	f.Add([]byte(`[{"last_exit":{"code":1},"last_exit":{"signal":2}},{"last_exit":null,"pid":-0}]`))
	f.Add([]byte(`[{"x":[1,-2.5e+3,true,false,null,{"y":"z"}],"uptime_secs":9223372036854775807}]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := scanContainers(in)
		if !ok {
			return
		}
		var want []messages.ContainerInfo
		err := json.Unmarshal(in, &want)
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case err == nil:
		case errors.As(err, &se):
			t.Fatalf("scanned %q, which is not JSON: %v", in, err)
		case errors.As(err, &te):
			// encoding/json goes on past a type error.
			if shown(te.Field) {
				t.Fatalf("scanned %q, whose %s encoding/json refuses: %v", in, te.Field, err)
			}
		default:
			// An unshown field's own UnmarshalJSON refused its value
			// (a time), and encoding/json stopped there.
			return
		}
		if !reflect.DeepEqual(got, shownFields(want)) {
			t.Fatalf("%q:\n scan %+v\n json %+v", in, got, shownFields(want))
		}
	})
}

// BenchmarkListing is what `pvcontrol ls` does with an answer of 100
// containers after it arrives: decode it and lay out the table.
func BenchmarkListing(b *testing.B) {
	var cs []messages.ContainerInfo
	for len(cs) < 100 {
		cs = append(cs, sampleContainers()...)
	}
	body, err := json.Marshal(cs[:100])
	if err != nil {
		b.Fatal(err)
	}
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		cs, err := decodeContainers(body)
		if err != nil {
			b.Fatal(err)
		}
		if err := writeContainers(io.Discard, cs, at); err != nil {
			b.Fatal(err)
		}
	}
}
