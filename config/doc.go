// Package config is Pantavisor's layered configuration (reference §9).
//
// Every key has a default and a set of levels allowed to change it. Layers
// are applied as upstream: defaults, pantavisor.config (LevelPVConf), the
// policy (LevelPolicy), the revision's OEM config (LevelOEM), the kernel
// command line (LevelPVCmdline, LevelPHCmdline), the environment
// (LevelEnv), user-meta (LevelMeta) and commands (LevelCmd). A write takes
// effect only if the key allows its level and no higher level has set the
// key, so a later layer wins only where the key permits it, and reloading
// a lower layer (a new revision's OEM config) never undoes a higher one.
//
// The loaders take content, not paths: the caller reads files, the
// command line and the environment and passes them in, which keeps this
// package pure and testable. A Config is safe for concurrent use.
//
// GET /config2 serves All (key, value and the "modified" level) and
// GET /config serves Legacy (values keyed by legacy dotted aliases).
package config
