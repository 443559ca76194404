// Package supervision decides what happens when a container's process ends:
// restart it after a delay, or give up. The decision is a pure function of
// the container's auto_recovery policy, its restart history and the exit
// (SPEC §3); the revision actor applies it through its supervisor strategy.
package supervision

import (
	"fmt"
	"math"
	"time"

	"github.com/pantavisor/pv/state"
)

// Kind is the restart policy.
type Kind string

// The auto_recovery policies, plus the legacy fallback for container-policy
// containers without an auto_recovery object.
const (
	No            Kind = "no"
	OnFailure     Kind = "on-failure"
	Always        Kind = "always"
	UnlessStopped Kind = "unless-stopped"
	// Legacy restarts on any exit, forever, with the floor backoff below:
	// upstream restarts such containers immediately and without limit,
	// which turns a crash loop into a CPU loop.
	Legacy Kind = "legacy"
)

// The floor backoff of the legacy fallback.
const (
	LegacyBaseDelay   = 100 * time.Millisecond
	LegacyMaxDelay    = 30 * time.Second
	LegacyResetWindow = 10 * time.Second
)

// DefaultMaxDelay is PV_AUTO_RECOVERY_MAX_DELAY's default.
const DefaultMaxDelay = 300 * time.Second

// Policy is a container's recovery policy with durations resolved.
type Policy struct {
	Kind Kind
	// MaxRetries 0 means unlimited.
	MaxRetries int
	RetryDelay time.Duration
	// Factor multiplies the delay per retry; ≤ 1 keeps it constant.
	Factor float64
	// ResetWindow: a run longer than this resets the retry count (0 = never).
	ResetWindow time.Duration
	// MaxDelay caps every delay.
	MaxDelay time.Duration
}

// PolicyFor resolves a container's policy from its run.json. maxDelay is
// PV_AUTO_RECOVERY_MAX_DELAY.
func PolicyFor(c *state.Container, maxDelay time.Duration) Policy {
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	if !c.HasAutoRecovery {
		if c.RestartPolicy == state.RestartContainer {
			return Policy{Kind: Legacy, RetryDelay: LegacyBaseDelay, Factor: 2,
				ResetWindow: LegacyResetWindow, MaxDelay: min(maxDelay, LegacyMaxDelay)}
		}
		return Policy{Kind: No, MaxDelay: maxDelay}
	}
	ar := c.AutoRecovery
	return Policy{
		Kind:        Kind(ar.Policy),
		MaxRetries:  ar.MaxRetries,
		RetryDelay:  time.Duration(ar.RetryDelay) * time.Second,
		Factor:      ar.BackoffFactor,
		ResetWindow: time.Duration(ar.ResetWindow) * time.Second,
		MaxDelay:    maxDelay,
	}
}

// Exit is how the container's run ended, as far as the policy cares.
type Exit struct {
	Failed bool // non-zero exit code or death by signal
	// Ran is how long the run lasted.
	Ran time.Duration
}

// History is what the policy remembers between runs.
type History struct {
	// Retries made since the last reset.
	Retries int
}

// Decision is the outcome: restart after Delay as retry number Retry, or
// give up (Restart false) for Reason.
type Decision struct {
	Restart bool
	Delay   time.Duration
	// Retry is the retry count after this decision (to store in History).
	Retry  int
	Reason string
}

// Decide applies the policy to one exit.
func Decide(p Policy, h History, e Exit) Decision {
	retries := h.Retries
	if p.ResetWindow > 0 && e.Ran > p.ResetWindow {
		retries = 0 // it ran long enough to count as healthy
	}
	switch p.Kind {
	case OnFailure:
		if !e.Failed {
			return Decision{Retry: retries, Reason: "exited successfully; policy on-failure does not restart"}
		}
	case Always, Legacy, UnlessStopped:
		// unless-stopped differs from always only in not undoing a stop
		// through the API, and such a stop never comes here: the
		// container actor makes the exit it causes stale, so the
		// revision's supervision, the only caller, never sees it.
	default:
		return Decision{Retry: retries, Reason: "policy no does not restart"}
	}
	if p.MaxRetries > 0 && retries >= p.MaxRetries {
		return Decision{Retry: retries, Reason: fmt.Sprintf("gave up after %d retries", retries)}
	}
	n := retries + 1
	return Decision{Restart: true, Delay: Delay(p, n), Retry: n, Reason: fmt.Sprintf("retry %d", n)}
}

// Delay before retry n (n ≥ 1): RetryDelay × Factor^(n-1), capped at
// MaxDelay; a Factor ≤ 1 keeps the delay constant. Computed in floating
// point so that large n saturates at the cap instead of overflowing.
func Delay(p Policy, n int) time.Duration {
	d := float64(p.RetryDelay)
	if p.Factor > 1 && n > 1 {
		d *= math.Pow(p.Factor, float64(n-1))
	}
	if p.MaxDelay > 0 && (d > float64(p.MaxDelay) || math.IsInf(d, 0) || math.IsNaN(d)) {
		return p.MaxDelay
	}
	return time.Duration(d)
}
