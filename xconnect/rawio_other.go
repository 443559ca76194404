//go:build !linux

package xconnect

// msgNoSignal: elsewhere SIGPIPE is left to the Go runtime, which ignores
// it for sockets.
const msgNoSignal = 0
