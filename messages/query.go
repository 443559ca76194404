package messages

import "time"

// Describe asks any actor for a snapshot of itself (GET /actors). Every actor
// answers with a Node; an actor that does not answer in time is reported as
// unresponsive, which is itself the signal that it is blocked.
type Describe struct{}

// Node is one actor in the live tree.
type Node struct {
	// Path is the actor's id ("root/rev-0/web").
	Path string `json:"path"`
	// Kind is root, revision, container, pool, link or ingress.
	Kind   string `json:"kind"`
	Status string `json:"status"`
	// Restarts counts restarts of what the actor supervises (the
	// container's process for a container actor).
	Restarts int `json:"restarts"`
	// ActorRestarts counts restarts of the actor itself after Go panics.
	ActorRestarts int        `json:"actor_restarts"`
	LastFailure   string     `json:"last_failure,omitempty"`
	LastFailureAt *time.Time `json:"last_failure_at,omitempty"`
	Since         time.Time  `json:"since"`
	// Info holds the key domain facts (pid, exit, leases, ...).
	Info     map[string]string `json:"info,omitempty"`
	Children []*Node           `json:"children,omitempty"`
	// ChildIDs are the children to describe next; filled by the actor and
	// consumed by whoever assembles the tree.
	ChildIDs []string `json:"-"`
	// Described holds, by id, children of ChildIDs that the actor
	// describes itself because they cannot answer now: a container actor
	// suspended in its recovery back-off.
	Described map[string]*Node `json:"-"`
}

// GetContainers asks the revision for GET /containers.
type GetContainers struct{}

// ContainerInfo is one GET /containers entry: the declared view plus the
// live status.
type ContainerInfo struct {
	Name          string       `json:"name"`
	Group         string       `json:"group"`
	Status        Status       `json:"status"`
	StatusGoal    string       `json:"status_goal"`
	RestartPolicy string       `json:"restart_policy"`
	Pid           int          `json:"pid"`
	UptimeSecs    int64        `json:"uptime_secs"`
	AutoRecovery  AutoRecovery `json:"auto_recovery"`
	Roles         []string     `json:"roles"`
	Provides      []any        `json:"provides"`
	Consumes      []any        `json:"consumes"`
	LastExit      *Exit        `json:"last_exit,omitempty"`
	Error         string       `json:"error,omitempty"`
	// IPv4Address is the lease with its prefix ("10.0.5.2/24"), MACAddress
	// its MAC and Pool its pool; empty for host-network containers.
	IPv4Address string `json:"ipv4_address,omitempty"`
	MACAddress  string `json:"mac_address,omitempty"`
	Pool        string `json:"pool,omitempty"`
}

// AutoRecovery is the auto_recovery block of GET /containers (upstream's
// fields plus ours).
type AutoRecovery struct {
	Type           string     `json:"type"`
	MaxRetries     int        `json:"max_retries"`
	CurrentRetries int        `json:"current_retries"`
	RetryDelay     int        `json:"retry_delay"`
	BackoffFactor  int        `json:"backoff_factor"`
	ResetWindow    int        `json:"reset_window"`
	NextRetryAt    *time.Time `json:"next_retry_at,omitempty"`
}

// ContainersReply answers GetContainers.
type ContainersReply struct {
	Containers []ContainerInfo
}

// GetGroups asks the revision for GET /groups.
type GetGroups struct{}

// GroupInfo is one GET /groups entry.
type GroupInfo struct {
	Name          string `json:"name"`
	StatusGoal    string `json:"status_goal"`
	RestartPolicy string `json:"restart_policy"`
	Status        Status `json:"status"`
}

// GroupsReply answers GetGroups.
type GroupsReply struct {
	Groups []GroupInfo
}
