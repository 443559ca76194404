package bench

import "testing"

// BenchmarkCtrlContainers is one keep-alive client's GET /containers
// against the control-socket figures' device, for profiling the figures:
// go test -run '^$' -bench CtrlContainers -cpuprofile cpu.out ./bench/
func BenchmarkCtrlContainers(b *testing.B) {
	d, err := startCtrlDevice()
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := d.close(); err != nil {
			b.Error(err)
		}
	}()
	c := unixClient(d.sock)
	defer c.CloseIdleConnections()
	b.ReportAllocs()
	for b.Loop() {
		if err := fetchDiscard(c, len(d.body)); err != nil {
			b.Fatal(err)
		}
	}
}
