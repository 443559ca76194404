package messages

// LinkInfo is one GET /xconnect-graph entry, in upstream's shape: a
// consumer's service and the provider export that answers it, with both
// ends' pids (-1 for a container not running, as upstream). Target and
// Socket are null when empty.
type LinkInfo struct {
	Consumer    string  `json:"consumer"`
	ConsumerPid int     `json:"consumer_pid"`
	Provider    string  `json:"provider"`
	ProviderPid int     `json:"provider_pid"`
	Name        string  `json:"name"`
	Type        string  `json:"type"`
	Role        string  `json:"role"`
	Interface   string  `json:"interface"`
	Target      *string `json:"target"`
	Socket      *string `json:"socket"`
}
