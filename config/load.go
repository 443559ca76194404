package config

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
)

// Report is what loading one or more sources did. Refusals of single
// entries (unknown key, level not allowed, lower level, bad value) are
// reported here and do not stop the other entries, as upstream; only a
// source that cannot be parsed at all is refused as a whole, by the
// loader's error.
type Report struct {
	// Applied lists the writes that took effect, in order.
	Applied []Value
	// Warnings are legacy-alias translations.
	Warnings []string
	// Refused holds one error per refused entry; each wraps a *SetError
	// (and so a sentinel) and names the source, and the line for files.
	Refused []error
	// Sysctl holds PV_SYSCTL_* (and legacy sysctl.*) entries from levels
	// that allow them (AllowPV, LevelOEM), cmdline ones without their pv_
	// prefix. They are not configuration keys: the caller writes them to
	// /proc/sys.
	Sysctl []Pair
}

// Err joins the refusals, or returns nil when there were none.
func (r *Report) Err() error { return errors.Join(r.Refused...) }

// sysctlLevels are where upstream honours sysctl entries.
const sysctlLevels = AllowPV | LevelOEM

// applyLocked writes pairs at level with c.mu held, recording each outcome
// in r. source names the input in messages. For cmdline sources, key
// resolution also tries the name without its pv_/ph_ prefix, which is how
// legacy tokens such as pv_log.level are written.
func (c *Config) applyLocked(r *Report, source string, level Level, pairs []Pair, cmdline bool) {
	for _, p := range pairs {
		where := source
		if p.Line > 0 {
			where = fmt.Sprintf("%s:%d", source, p.Line)
		}
		name := p.Key
		bare := name // the cmdline token without its pv_/ph_ prefix
		if cmdline && len(name) >= len(pvPrefix) {
			bare = name[len(pvPrefix):]
		}
		if isSysctl(name) || isSysctl(bare) {
			if level&sysctlLevels == 0 {
				r.Refused = append(r.Refused, fmt.Errorf("%s: %w", where, &SetError{
					Key: p.Key, Level: level, Value: p.Value, Err: ErrLevelNotAllowed,
					Reason: "sysctl settings allowed: " + sysctlLevels.String()}))
				continue
			}
			if !isSysctl(name) {
				p.Key = bare // report "sysctl.x", not the cmdline's "pv_sysctl.x"
			}
			r.Sysctl = append(r.Sysctl, p)
			continue
		}
		if _, _, ok := resolve(name); !ok {
			if _, _, ok := resolve(bare); ok {
				name = bare
			}
		}
		v, warning, err := c.setLocked(name, p.Value, level, false)
		if warning != "" {
			r.Warnings = append(r.Warnings, where+": "+warning)
		}
		if err != nil {
			r.Refused = append(r.Refused, fmt.Errorf("%s: %w", where, err))
			continue
		}
		r.Applied = append(r.Applied, v)
	}
}

// LoadFile parses a KEY=VALUE config file (see ParseConfigFile) and applies
// it at level: LevelPVConf for pantavisor.config, LevelPHConf for
// pantahub.config, LevelPolicy for a policy, LevelOEM for a revision's OEM
// config. name identifies the source in messages (its path). A malformed
// file applies nothing and returns an error wrapping ErrSyntax with the
// line number.
func (c *Config) LoadFile(level Level, name string, data []byte) (Report, error) {
	pairs, err := ParseConfigFile(data)
	if err != nil {
		return Report{}, fmt.Errorf("load %s: %w", name, err)
	}
	var r Report
	c.mu.Lock()
	c.applyLocked(&r, name, level, pairs, false)
	c.mu.Unlock()
	return r, nil
}

// LoadPolicy applies the content of policy file name at LevelPolicy after
// checking that name is a bare name (ValidName): the caller reads
// <etc>/policies/<name>.config, so a path would escape that directory.
func (c *Config) LoadPolicy(name string, data []byte) (Report, error) {
	if err := ValidName(name); err != nil {
		return Report{}, fmt.Errorf("load policy: %w", err)
	}
	return c.LoadFile(LevelPolicy, "policy "+name, data)
}

// LoadCmdline applies a kernel command line: pv_* parameters at
// LevelPVCmdline and ph_* parameters at LevelPHCmdline (see ParseCmdline).
// A parameter is matched as a whole ("pv_log_level" is PV_LOG_LEVEL) or,
// failing that, without its prefix as a legacy alias ("pv_log.level").
// Upstream applies ph_* later than pv_*; the levels make the order
// irrelevant, so both are applied here.
func (c *Config) LoadCmdline(cmdline string) Report {
	var r Report
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ParseCmdline(cmdline) {
		level := LevelPVCmdline
		if hasPrefixFold(p.Key, phPrefix) {
			level = LevelPHCmdline
		}
		c.applyLocked(&r, "cmdline", level, []Pair{p}, true)
	}
	return r
}

// LoadEnv applies the PV_*/PH_* variables of environ (os.Environ form) at
// LevelEnv; other variables are ignored.
func (c *Config) LoadEnv(environ []string) Report {
	var r Report
	c.mu.Lock()
	c.applyLocked(&r, "env", LevelEnv, ParseEnviron(environ), false)
	c.mu.Unlock()
	return r
}

// LoadMeta applies user-meta at LevelMeta, in key order. user-meta carries
// much that is not configuration, so unknown keys and keys not allowed at
// LevelMeta are only reported.
func (c *Config) LoadMeta(meta map[string]string) Report {
	return c.loadMap("user-meta", LevelMeta, meta)
}

// SetMeta writes one user-meta key at LevelMeta, as PUT /user-meta/{key}
// does; see Set.
func (c *Config) SetMeta(key, value string) (warning string, err error) {
	return c.Set(key, value, LevelMeta)
}

// SetCommand writes one key at LevelCmd, the level of control-socket
// commands; see Set.
func (c *Config) SetCommand(key, value string) (warning string, err error) {
	return c.Set(key, value, LevelCmd)
}

func (c *Config) loadMap(source string, level Level, m map[string]string) Report {
	pairs := make([]Pair, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		pairs = append(pairs, Pair{Key: k, Value: m[k]})
	}
	var r Report
	c.mu.Lock()
	c.applyLocked(&r, source, level, pairs, false)
	c.mu.Unlock()
	return r
}

// PolicyName chooses the policy to load at boot, as upstream: PV_POLICY
// (or its alias "policy") from the cmdline, else the environment, else
// pantavisor.config; within a source the last occurrence counts, and an
// empty value counts as unset. A value that is not a bare name (ValidName)
// is rejected and the next source is tried, as upstream; the rejections
// are returned joined in err. "" means no policy.
//
// Upstream looks in cmdline before env although env has the higher level,
// so when both set different names the loaded policy is the cmdline's
// while the effective PV_POLICY is env's. We keep the upstream order.
func PolicyName(conf, cmdline, env []Pair) (name string, err error) {
	var errs []error
	sources := []struct {
		name    string
		pairs   []Pair
		cmdline bool
	}{{"cmdline", cmdline, true}, {"env", env, false}, {"config", conf, false}}
	for _, s := range sources {
		v := ""
		for _, p := range s.pairs {
			k := p.Key
			if s.cmdline {
				// Only pv_ tokens: ph_ ones are at a level PV_POLICY refuses.
				if !hasPrefixFold(k, pvPrefix) {
					continue
				}
				if _, _, ok := resolve(k); !ok {
					k = k[len(pvPrefix):]
				}
			}
			if i, _, ok := resolve(k); ok && table[i].Name == PVPolicy {
				v = p.Value
			}
		}
		if v == "" {
			continue
		}
		if err := ValidName(v); err != nil {
			errs = append(errs, fmt.Errorf("choose policy from %s: %w", s.name, err))
			continue
		}
		return v, errors.Join(errs...)
	}
	return "", errors.Join(errs...)
}

// BootSources are the inputs of the boot-time layers. Nothing is read from
// fixed paths: the caller reads the files and passes their content.
type BootSources struct {
	// ConfName names pantavisor.config in messages, usually its path.
	ConfName string
	// Conf is the content of pantavisor.config; nil when there is none.
	Conf []byte
	// Cmdline is the kernel command line (/proc/cmdline).
	Cmdline string
	// Environ is the process environment (os.Environ()).
	Environ []string
	// Policy returns the content of the named policy file,
	// <PV_SYSTEM_ETCPANTAVISORDIR>/policies/<name>.config. The name has
	// passed ValidName. It is called once pantavisor.config is applied
	// (and nothing else yet), so the directory is the file's, as
	// upstream reads it. Nil means no policy can be loaded.
	Policy func(name string) ([]byte, error)
}

// LoadBoot applies the boot-time layers in upstream's order:
// pantavisor.config at LevelPVConf, the chosen policy (PolicyName) at
// LevelPolicy, the cmdline at LevelPVCmdline/LevelPHCmdline and the
// environment at LevelEnv. pantavisor.config is applied before the policy
// is read, as upstream does: it may place the policies
// (PV_SYSTEM_ETCPANTAVISORDIR). A malformed line of
// pantavisor.config or of the policy is skipped, as upstream does, and
// the file's other lines apply: all or nothing, one stray line cost a
// device its storage device and its bootloader type. The malformed lines
// and a policy that cannot be read are returned in the error (joined),
// so that PID 1 can log them and go on with a usable configuration.
func (c *Config) LoadBoot(src BootSources) (Report, error) {
	var errs []error
	confName := src.ConfName
	if confName == "" {
		confName = "pantavisor.config"
	}
	conf, err := ParseConfigLines(src.Conf)
	if err != nil {
		errs = append(errs, fmt.Errorf("load %s: lines skipped: %w", confName, err))
	}
	cmdline := ParseCmdline(src.Cmdline)
	env := ParseEnviron(src.Environ)

	var r Report
	c.mu.Lock()
	c.applyLocked(&r, confName, LevelPVConf, conf, false)
	c.mu.Unlock()

	policyName, err := PolicyName(conf, cmdline, env)
	if err != nil {
		errs = append(errs, err)
	}
	var policy []Pair
	if policyName != "" {
		policy, err = readPolicy(src.Policy, policyName)
		if err != nil {
			errs = append(errs, err)
		}
	}

	c.mu.Lock()
	c.applyLocked(&r, "policy "+policyName, LevelPolicy, policy, false)
	for _, p := range cmdline {
		level := LevelPVCmdline
		if hasPrefixFold(p.Key, phPrefix) {
			level = LevelPHCmdline
		}
		c.applyLocked(&r, "cmdline", level, []Pair{p}, true)
	}
	c.applyLocked(&r, "env", LevelEnv, env, false)
	c.mu.Unlock()
	return r, errors.Join(errs...)
}

func readPolicy(read func(string) ([]byte, error), name string) ([]Pair, error) {
	if read == nil {
		return nil, fmt.Errorf("load policy %q: no policy source", name)
	}
	data, err := read(name)
	if err != nil {
		return nil, fmt.Errorf("load policy %q: %w", name, err)
	}
	pairs, err := ParseConfigLines(data)
	if err != nil {
		return pairs, fmt.Errorf("load policy %q: lines skipped: %w", name, err)
	}
	return pairs, nil
}

// OEMConfigPath returns where a revision's OEM config lives,
// <trailDir>/<PV_OEM_NAME>/<PV_POLICY or "default">.config, from the
// effective values; ok is false when PV_OEM_NAME is unset. Both names have
// passed the bare-name check when they were set, so the path stays inside
// trailDir. Load the file with LoadFile(LevelOEM, path, data) after every
// state load.
func (c *Config) OEMConfigPath(trailDir string) (path string, ok bool) {
	oem := c.String(PVOEMName)
	if oem == "" {
		return "", false
	}
	policy := c.String(PVPolicy)
	if policy == "" {
		policy = "default"
	}
	return filepath.Join(trailDir, oem, policy+".config"), true
}
