package supervision

import (
	"testing"
	"time"

	"github.com/pantavisor/pv/state"
)

func TestDecide(t *testing.T) {
	onFailure := Policy{Kind: OnFailure, MaxRetries: 3, RetryDelay: time.Second, Factor: 2, MaxDelay: DefaultMaxDelay}
	always := Policy{Kind: Always, RetryDelay: time.Second, MaxDelay: DefaultMaxDelay}
	unless := Policy{Kind: UnlessStopped, RetryDelay: 2 * time.Second, MaxDelay: DefaultMaxDelay}
	withReset := onFailure
	withReset.ResetWindow = 10 * time.Second
	tests := []struct {
		name    string
		p       Policy
		h       History
		e       Exit
		restart bool
		delay   time.Duration
		retry   int
	}{
		{"on-failure, failure, first retry", onFailure, History{0}, Exit{Failed: true}, true, time.Second, 1},
		{"on-failure, second retry doubles", onFailure, History{1}, Exit{Failed: true}, true, 2 * time.Second, 2},
		{"on-failure, third retry", onFailure, History{2}, Exit{Failed: true}, true, 4 * time.Second, 3},
		{"on-failure, budget spent", onFailure, History{3}, Exit{Failed: true}, false, 0, 3},
		{"on-failure, clean exit", onFailure, History{0}, Exit{Failed: false}, false, 0, 0},
		{"always, clean exit restarts", always, History{0}, Exit{}, true, time.Second, 1},
		{"always, unlimited", always, History{1000}, Exit{Failed: true}, true, time.Second, 1001},
		{"unless-stopped, exit restarts", unless, History{0}, Exit{}, true, 2 * time.Second, 1},
		{"no never restarts", Policy{Kind: No}, History{0}, Exit{Failed: true}, false, 0, 0},
		{"reset window: long run starts over", withReset, History{3}, Exit{Failed: true, Ran: 11 * time.Second}, true, time.Second, 1},
		{"reset window: short run keeps count", withReset, History{3}, Exit{Failed: true, Ran: 9 * time.Second}, false, 0, 3},
		{"legacy restarts a clean exit", PolicyFor(&state.Container{RestartPolicy: state.RestartContainer}, 0), History{0}, Exit{}, true, LegacyBaseDelay, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.p, tc.h, tc.e)
			if d.Restart != tc.restart || d.Delay != tc.delay || d.Retry != tc.retry {
				t.Errorf("got %+v, want restart=%v delay=%v retry=%d", d, tc.restart, tc.delay, tc.retry)
			}
			if d.Reason == "" {
				t.Error("decision without a reason")
			}
		})
	}
}

func TestDelayCapAndOverflow(t *testing.T) {
	p := Policy{Kind: Always, RetryDelay: time.Second, Factor: 10, MaxDelay: 300 * time.Second}
	want := []time.Duration{time.Second, 10 * time.Second, 100 * time.Second, 300 * time.Second, 300 * time.Second}
	for i, w := range want {
		if got := Delay(p, i+1); got != w {
			t.Errorf("retry %d: %v, want %v", i+1, got, w)
		}
	}
	for _, n := range []int{64, 1000, 1 << 30} {
		if got := Delay(p, n); got != p.MaxDelay {
			t.Errorf("retry %d: %v, want the cap", n, got)
		}
	}
	constant := Policy{RetryDelay: 3 * time.Second, Factor: 0.5, MaxDelay: time.Hour}
	if Delay(constant, 5) != 3*time.Second {
		t.Error("factor ≤ 1 is not constant")
	}
}

func TestLegacyFloorBackoff(t *testing.T) {
	p := PolicyFor(&state.Container{RestartPolicy: state.RestartContainer}, 0)
	var got []time.Duration
	h := History{}
	for i := 0; i < 12; i++ {
		d := Decide(p, h, Exit{Failed: true, Ran: time.Millisecond})
		got = append(got, d.Delay)
		h.Retries = d.Retry
	}
	if got[0] != 100*time.Millisecond || got[1] != 200*time.Millisecond || got[9] != 30*time.Second || got[11] != 30*time.Second {
		t.Errorf("legacy delays: %v", got)
	}
	d := Decide(p, h, Exit{Failed: true, Ran: 11 * time.Second})
	if d.Delay != LegacyBaseDelay || d.Retry != 1 {
		t.Errorf("legacy reset after 10 s up: %+v", d)
	}
	sys := PolicyFor(&state.Container{RestartPolicy: state.RestartSystem}, 0)
	if sys.Kind != No {
		t.Errorf("system container without auto_recovery: %v", sys.Kind)
	}
}
