package ctrl

import (
	"context"
	"slices"
	"testing"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// The threshold GC runs again when a revision's progress turns final:
// whether it may go depends on it (OnlyFinal). A local step put (NEW)
// that ends without ever being in use (a LOCAL_RUN refused) was never
// collected by the threshold GC, its key blind to progress (found by
// review).
func TestThresholdGCAfterAProgressTurnsFinal(t *testing.T) {
	st := newStorage(t)
	l := st.Layout
	installRev(t, l, "0", "conf", "factory root")
	installRev(t, l, "locals/next", "conf next", "root next")
	if err := l.WriteProgress("locals/next", storage.NewProgress(storage.StatusNew, storage.MsgInstalled)); err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	// Any filesystem has less than 100 % free.
	s, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "100", config.PVStorageGCDeferTime: "0"})
	ctx := context.Background()
	if !s.thresholdGC(ctx) {
		t.Fatal("below the threshold: no GC")
	}
	if revs, _ := l.Revisions(); !slices.Contains(revs, "locals/next") {
		t.Fatalf("the NEW step was removed: %v", revs)
	}
	// Its LOCAL_RUN is refused: the update is over, never in use.
	if err := l.WriteProgress("locals/next", storage.NewProgress(storage.StatusWontGo, "refused")); err != nil {
		t.Fatal(err)
	}
	ran := s.thresholdGC(ctx)
	revs, _ := l.Revisions()
	if !ran || slices.Contains(revs, "locals/next") {
		t.Errorf("threshold GC after locals/next turned WONTGO: ran=%v, revisions %v; want it run and locals/next removed", ran, revs)
	}
}
