// Package messages holds every message that crosses an actor boundary. They
// are plain structs named for what happened (ContainerExited) or what is asked
// (StartContainer), never for who sends them. Messages are values: once sent,
// neither side modifies them.
package messages
