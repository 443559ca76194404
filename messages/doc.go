// Package messages holds every message that crosses an actor boundary. They
// are plain structs named for what happened (ContainerExited) or what is asked
// (StartContainer), never for who sends them. Messages are values: a sender
// keeps no reference to what it sent, so the receiver may keep it and update
// it as its own (the revision keeps each ContainerStatusChanged as the row it
// updates).
package messages
