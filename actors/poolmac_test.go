package actors

import (
	"context"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// A static mac and the MAC derived from another container's dynamic
// address (02:00:<ip octets>) must not be the same on one pool: two
// interfaces with one MAC on one bridge (or one macvlan parent) break
// both containers' traffic. Validation cannot see a dynamic address's
// MAC, so the pool must never lease the address whose MAC is db's.
func TestStaticMACIsNeverADynamicLeasesMAC(t *testing.T) {
	doc := map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{
			"groups": []any{map[string]any{"name": "app"}},
			"network": map[string]any{"pools": map[string]any{
				"lan": map[string]any{"bridge": "pvbr0", "subnet": "10.0.5.0/24", "gateway": "10.0.5.1"},
			}},
		},
		// db picks the MAC from the documentation's example.
		"db/run.json": map[string]any{"name": "db", "group": "app",
			"network": map[string]any{"pool": "lan", "ip": "10.0.5.50", "mac": "02:00:0a:00:05:02"}},
		"web/run.json": map[string]any{"name": "web", "group": "app", "network": map[string]any{"pool": "lan"}},
	}
	st := parseState(t, doc)
	e := newFakeEngine()
	sys := startSystemCfg(t, Config{State: st, Engine: e, PoolNet: &fakePoolNet{e: e}})
	cs := waitStatus(t, sys, map[string]messages.Status{"web": messages.StatusStarted, "db": messages.StatusStarted})
	macs := map[string]string{}
	for _, c := range cs {
		if other, dup := macs[c.MACAddress]; dup && c.MACAddress != "" {
			t.Errorf("containers %s and %s both got MAC %s on pool lan (%+v)", other, c.Name, c.MACAddress, cs)
		}
		macs[c.MACAddress] = c.Name
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = sys.Shutdown(ctx, "test")
}
