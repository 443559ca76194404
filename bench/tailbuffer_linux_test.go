package bench

import (
	"testing"
	"time"
)

func TestTailBufferWatchesLines(t *testing.T) {
	tb := &tailBuffer{max: 64}
	booted := tb.watch(bootLine)
	other := tb.watch(missedLine)
	// The line comes in pieces, after a line that only starts like it.
	for _, p := range []string{"msg=\"revision", " stopped\"\nlevel=INFO msg=\"revision bo", "oted\" rev=0", " took=3ms\n"} {
		select {
		case <-booted:
			t.Fatalf("fired before the line was complete, at %q", p)
		default:
		}
		tb.Write([]byte(p))
	}
	select {
	case at := <-booted:
		if time.Since(at) > time.Minute {
			t.Fatalf("odd time %v", at)
		}
	default:
		t.Fatal("the boot line did not fire its watch")
	}
	select {
	case <-other:
		t.Fatal("the missed-goals watch fired on the plain boot line")
	default:
	}
	// A fired watch is dropped; later lines do not block on its channel.
	tb.Write([]byte("msg=\"revision booted\" again\n"))
	tb.Write([]byte("msg=\"revision booted without reaching every goal\" rev=0\n"))
	select {
	case <-other:
	default:
		t.Fatal("the missed-goals line did not fire its watch")
	}
	if len(tb.watches) != 0 {
		t.Fatalf("%d watches left, want 0", len(tb.watches))
	}
	if got := tb.String(); len(got) > 64 {
		t.Fatalf("kept %d bytes, max 64", len(got))
	}
}
