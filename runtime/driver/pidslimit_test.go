package driver

import "testing"

// The containers' share of a task limit keeps a reserve for the supervisor:
// 256 tasks on a small board, an eighth on a large one, never more than half.
func TestContainersPidsMax(t *testing.T) {
	for _, c := range []struct{ limit, want int64 }{
		{2048, 1792},   // threads-max of a 256 MB board
		{32768, 28672}, // the default pid_max
		{300, 150},     // a small cgroup above the supervisor
	} {
		if got := containersPidsMax(c.limit); got != c.want {
			t.Errorf("containersPidsMax(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}
