package state

// ContainerView is the static part of one GET /containers entry (upstream's
// shape): what the revision declares. The runtime adds status, pid, uptime
// and the live auto-recovery counters.
type ContainerView struct {
	Name          string            `json:"name"`
	Group         string            `json:"group"`
	StatusGoal    Goal              `json:"status_goal"`
	RestartPolicy RestartPolicy     `json:"restart_policy"`
	Roles         []string          `json:"roles"`
	AutoRecovery  AutoRecoveryView  `json:"auto_recovery"`
	Provides      []ProvidesView    `json:"provides"`
	Consumes      []ConsumesView    `json:"consumes"`
	Network       *ContainerNetView `json:"network,omitempty"`
}

// AutoRecoveryView is the auto_recovery block of GET /containers. Upstream
// names the policy "type" and reports backoff_factor multiplied by 100 as an
// integer; both are kept for its clients.
type AutoRecoveryView struct {
	Type           RecoveryPolicy `json:"type"`
	MaxRetries     int            `json:"max_retries"`
	CurrentRetries int            `json:"current_retries"`
	RetryDelay     int            `json:"retry_delay"`
	BackoffFactor  int            `json:"backoff_factor"`
	ResetWindow    int            `json:"reset_window"`
}

// ProvidesView is one exported service.
type ProvidesView struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Socket string `json:"socket"`
}

// ConsumesView is one required or optional service.
type ConsumesView struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Requirement string `json:"requirement"`
	Role        string `json:"role"`
	Interface   string `json:"interface"`
	Target      string `json:"target"`
}

// ContainerNetView is the declared networking of a container.
type ContainerNetView struct {
	Mode string `json:"mode"`
	Pool string `json:"pool,omitempty"`
}

// GroupView is the static part of one GET /groups entry; the runtime adds
// the live status.
type GroupView struct {
	Name          string        `json:"name"`
	StatusGoal    Goal          `json:"status_goal"`
	RestartPolicy RestartPolicy `json:"restart_policy"`
	Timeout       int           `json:"timeout"`
}

// View returns the container's GET /containers entry as declared.
func (c *Container) View() ContainerView {
	v := ContainerView{
		Name:          c.Name,
		Group:         c.Group,
		StatusGoal:    c.StatusGoal,
		RestartPolicy: c.RestartPolicy,
		Roles:         append([]string{}, c.Roles...),
		AutoRecovery: AutoRecoveryView{
			Type:          c.AutoRecovery.Policy,
			MaxRetries:    c.AutoRecovery.MaxRetries,
			RetryDelay:    c.AutoRecovery.RetryDelay,
			BackoffFactor: int(c.AutoRecovery.BackoffFactor*100 + 0.5),
			ResetWindow:   c.AutoRecovery.ResetWindow,
		},
		Provides: []ProvidesView{},
		Consumes: []ConsumesView{},
	}
	for _, e := range c.Exports {
		v.Provides = append(v.Provides, ProvidesView{Name: e.Name, Type: e.Type, Socket: e.Socket})
	}
	add := func(list []ServiceRequirement, req string) {
		for _, r := range list {
			role := r.Role
			if role == "" {
				role = "any"
			}
			v.Consumes = append(v.Consumes, ConsumesView{
				Name: r.Name, Type: r.Type, Requirement: req, Role: role,
				Interface: r.Interface, Target: r.Target,
			})
		}
	}
	add(c.Requires, "required")
	add(c.Optional, "optional")
	if c.Network != nil {
		v.Network = &ContainerNetView{Mode: string(c.Network.Mode), Pool: c.Network.Pool}
	}
	return v
}

// ContainerViews returns every container's entry, sorted by name.
func (s *State) ContainerViews() []ContainerView {
	out := make([]ContainerView, 0, len(s.Containers))
	for _, c := range s.Containers {
		out = append(out, c.View())
	}
	return out
}

// GroupViews returns every group's entry in start order.
func (s *State) GroupViews() []GroupView {
	out := make([]GroupView, 0, len(s.Groups))
	for _, g := range s.Groups {
		out = append(out, GroupView{Name: g.Name, StatusGoal: g.StatusGoal, RestartPolicy: g.RestartPolicy, Timeout: g.Timeout})
	}
	return out
}
