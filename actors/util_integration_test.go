//go:build integration

package actors_test

import (
	"strconv"
	"syscall"
)

func itoa(n int) string { return strconv.Itoa(n) }

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
