// Package integration holds the end-to-end tests: bin/pantavisor in
// appengine mode on storage directories built by the tests, with real
// containers (busybox and examples/pvapp in squashfs roots), driven only
// through the control socket and bin/pvcontrol.
//
// Run them as root with the test binary as PID 1 of fresh namespaces:
//
//	go test -tags integration -exec 'unshare --pid --net --mount --fork --mount-proc' ./integration
package integration
