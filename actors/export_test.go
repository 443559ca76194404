package actors

// InjectPanic makes a container actor panic as a Go bug would; for the
// external tests of this package only.
func InjectPanic(s *System, container string) {
	s.injectPanic(nil, container)
}
