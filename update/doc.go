// Package update holds the pure decisions of the update flow: what to run
// at boot (Resume), whether a new revision needs a reboot and which
// containers it swaps (Diff), how a tried revision's progress moves to a
// commit or a rollback (Next), what a failure leads to (OnFailure) and
// whether a LOCAL_RUN may start (Run).
//
// Nothing here does I/O, keeps time or talks to actors: each function
// takes the facts it needs (bootloader variables, progress read from disk,
// parsed states, whether a timer fired) and returns a value that says what
// to do. The revision actor and ctrl carry the decisions out, in the order
// each decision's doc comment asks for crash safety.
//
// The behaviour follows upstream Pantavisor's update/update.c and
// pantavisor.c (reference §3); where it deliberately differs the doc
// comment says so. The main difference (SPEC §4): a failing factory
// revision "0" enters safe mode instead of upstream's reboot loop.
package update
