//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"
)

// hostDbus binds the host's /usr (dbus-daemon, dbus-send and their
// libraries) into a busybox container: the test image has no D-Bus of its
// own.
var hostDbus = []string{
	"lxc.mount.entry = /usr usr none bind,ro,create=dir 0 0",
	"lxc.mount.entry = /usr/lib lib none bind,ro,create=dir 0 0",
	"lxc.mount.entry = /usr/lib64 lib64 none bind,ro,create=dir 0 0",
}

// busConf lets anybody talk to the bus, root own org.pantavisor.Test, and
// only operator (uid 1001) call it. Single quotes: the whole script is one
// double-quoted word of lxc.init.cmd.
const busConf = `<busconfig><listen>unix:path=/run/dbus/system_bus_socket</listen><auth>EXTERNAL</auth>` +
	`<policy context='default'><allow user='*'/><deny own='*'/><allow send_destination='org.freedesktop.DBus'/>` +
	`<deny send_destination='org.pantavisor.Test'/><allow receive_sender='*'/><allow send_type='method_return'/></policy>` +
	`<policy user='root'><allow own='org.pantavisor.Test'/></policy>` +
	`<policy user='operator'><allow send_destination='org.pantavisor.Test'/></policy></busconfig>`

// busProvider runs a stock dbus-daemon with busConf and a Ping service on
// it; its passwd maps operator to 1001.
const busProvider = `/bin/sh "-c" "echo operator:x:1001:1001::/:/bin/sh >> /etc/passwd; echo operator:x:1001: >> /etc/group; ` +
	`mkdir -p /run/dbus; printf '%s' \"` + busConf + `\" > /etc/pv-bus.conf; ` +
	`/usr/bin/dbus-daemon --config-file=/etc/pv-bus.conf --nofork --nopidfile & ` +
	`exec pvapp dbus-serve unix:path=/run/dbus/system_bus_socket org.pantavisor.Test"`

// busClient calls Ping with dbus-send through the injected socket until it
// gets an answer or the bus refuses it, and prints which.
const busClient = `/bin/sh "-c" "trap 'exit 0' TERM; until [ -S /run/dbus/system_bus_socket ]; do sleep 0.05; done; ` +
	`n=0; while [ $n -lt 100 ]; do n=$((n+1)); ` +
	`out=$(/usr/bin/dbus-send --bus=unix:path=/run/dbus/system_bus_socket --print-reply --dest=org.pantavisor.Test /org/pantavisor/Test org.pantavisor.Test.Ping 2>&1); ` +
	`case $out in *pong*) echo CALL-OK; break;; *AccessDenied*) echo CALL-DENIED; echo $out; break;; esac; sleep 0.1; done; ` +
	`while true; do sleep 1; done"`

// The provider's stock dbus-daemon sees each consumer as its link's role:
// operator (1001 in the provider's passwd) may call, another role (65534)
// is refused by the daemon's own policy.
func TestXconnectDbusRoles(t *testing.T) {
	svc := []any{map[string]any{"name": "system-bus", "type": "dbus", "socket": "/run/dbus/system_bus_socket"}}
	req := func(role string) map[string]any {
		return map[string]any{"required": []any{map[string]any{"name": "system-bus", "type": "dbus",
			"role": role, "target": "/run/dbus/system_bus_socket"}}}
	}
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "bus", group: "app", cmd: busProvider, lxc: hostDbus, run: map[string]any{"exports": "services.json"}, services: svc},
		{name: "op", group: "app", cmd: busClient, lxc: hostDbus, run: map[string]any{"services": req("operator")}},
		{name: "guest", group: "app", cmd: busClient, lxc: hostDbus, run: map[string]any{"services": req("guest")}},
	})
	d := startDevice(t, storage)
	d.waitConsole("op", "CALL-", 60*time.Second)
	d.waitConsole("guest", "CALL-", 30*time.Second)
	if c := d.console("op"); !strings.Contains(c, "CALL-OK") {
		t.Errorf("operator could not call through the link:\n%s\nbus:\n%s", c, d.console("bus"))
	}
	if c := d.console("guest"); !strings.Contains(c, "CALL-DENIED") {
		t.Errorf("guest was not refused by the provider's bus:\n%s", c)
	}
}
