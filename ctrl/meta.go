package ctrl

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/storage"
)

// maxMetaValue is upstream's limit on a user-meta or device-meta value.
const maxMetaValue = 4096

// maxMetaKey bounds a key: it is a file name.
const maxMetaKey = 255

// Upstream's messages for the metadata endpoints.
const (
	msgNoUserMeta   = "User meta does not exist"
	msgNoDeviceMeta = "Device meta does not exist"
)

// Our own messages for the metadata endpoints.
const (
	msgNoMeta     = "Metadata not available"
	msgNoMetaData = "No data"
)

// Where the two kinds of metadata live, under the run directory (what
// containers see at /pantavisor/user-meta and /pantavisor/device-meta) and
// under the storage directory (what survives a reboot), as upstream.
const (
	userMetaRun      = "user-meta"
	deviceMetaRun    = "device-meta"
	userMetaCache    = "cache/meta"
	deviceMetaCache  = "cache/devmeta"
	metaDirMode      = 0o755
	metaFileMode     = 0o644
	metaLoadMaxFiles = 4096
	msgTooManyMeta   = "Too many metadata keys"
)

// metaMaxKeys bounds the keys of one kind: half of what load reads, the
// rest left for temporary files a crash may leave. Before, a PUT past it
// was taken, and at the next start load refused the whole directory:
// both kinds of metadata answered 500 and the configuration overrides of
// user-meta were not applied. A variable for the tests.
var metaMaxKeys = metaLoadMaxFiles / 2

// errTooManyMeta: a new key past metaMaxKeys.
var errTooManyMeta = errors.New("too many metadata keys")

// metaStore is one kind of metadata: key → value, kept in memory, as one
// file per key in the run directory and in the persistent cache.
type metaStore struct {
	run, cache string
	notFound   string
	// onSet is called with each key written (PUT and the boot load), the
	// store's lock held; user-meta overrides configuration with it.
	onSet func(key, value string)

	mu     sync.Mutex
	values map[string]string
}

// SetMeta gives the server its metadata directories: user-meta and
// device-meta are served from runDir/user-meta and runDir/device-meta and
// persisted under storageDir/cache/meta and storageDir/cache/devmeta. The
// persisted keys are loaded and published into the run directories (whose
// stale files are removed), and user-meta is applied to the configuration
// at config.LevelMeta (see SetConfig; either may come first). Without it the
// /user-meta and /device-meta endpoints answer 500 "Metadata not
// available". It must be called before Serve.
func (s *Server) SetMeta(runDir, storageDir string) error {
	x := s.extra()
	user := &metaStore{run: filepath.Join(runDir, userMetaRun), cache: filepath.Join(storageDir, userMetaCache),
		notFound: msgNoUserMeta, onSet: s.overrideConfig}
	dev := &metaStore{run: filepath.Join(runDir, deviceMetaRun), cache: filepath.Join(storageDir, deviceMetaCache),
		notFound: msgNoDeviceMeta}
	for _, m := range []*metaStore{user, dev} {
		if err := m.load(); err != nil {
			return err
		}
	}
	x.userMeta, x.deviceMeta = user, dev
	return nil
}

// overrideConfig applies a user-meta key to the configuration at
// config.LevelMeta, as upstream's pv_config_override_value. user-meta
// carries much that is not configuration: unknown keys are ignored, other
// refusals (a key not settable from metadata, a bad value) logged.
func (s *Server) overrideConfig(key, value string) {
	cfg := s.config()
	if cfg == nil {
		return
	}
	if _, err := cfg.SetMeta(key, value); err != nil && !errors.Is(err, config.ErrUnknownKey) {
		s.log.Info("ctrl: user-meta not applied to configuration", "key", key, "err", err)
	}
}

// load reads the persisted keys into memory and publishes them into the run
// directory, removing files no key backs (left by an earlier run).
func (m *metaStore) load() error {
	for _, dir := range []string{m.cache, m.run} {
		if err := os.MkdirAll(dir, metaDirMode); err != nil {
			return fmt.Errorf("load metadata: %w", err)
		}
	}
	m.values = make(map[string]string)
	ents, err := os.ReadDir(m.cache)
	if err != nil {
		return fmt.Errorf("load metadata: %w", err)
	}
	if len(ents) > metaLoadMaxFiles {
		return fmt.Errorf("load metadata: %s holds %d files, more than %d", m.cache, len(ents), metaLoadMaxFiles)
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || checkMetaKey(name) != nil {
			continue // a temporary file left by a crash, or not ours
		}
		b, err := storage.ReadFileMax(filepath.Join(m.cache, name), maxMetaValue)
		if errors.Is(err, storage.ErrFileTooLarge) {
			continue // not a value the socket would have stored
		}
		if err != nil {
			return fmt.Errorf("load metadata: %w", err)
		}
		m.values[name] = string(b)
	}
	stale, err := os.ReadDir(m.run)
	if err != nil {
		return fmt.Errorf("load metadata: %w", err)
	}
	for _, e := range stale {
		if _, ok := m.values[e.Name()]; !ok && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(m.run, e.Name())); err != nil {
				return fmt.Errorf("load metadata: %w", err)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.values)) {
		if err := storage.WriteFileAtomic(filepath.Join(m.run, k), []byte(m.values[k]), metaFileMode); err != nil {
			return fmt.Errorf("load metadata: %w", err)
		}
		if m.onSet != nil {
			m.onSet(k, m.values[k])
		}
	}
	return nil
}

// checkMetaKey says why key cannot name a metadata entry: it becomes a file
// name in two directories, so it must be one plain path element.
func checkMetaKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty")
	case len(key) > maxMetaKey:
		return fmt.Errorf("longer than %d bytes", maxMetaKey)
	case !utf8.ValidString(key):
		return errors.New("not UTF-8")
	case strings.ContainsAny(key, `/\`):
		return errors.New("contains a slash")
	case strings.HasPrefix(key, "."):
		return errors.New("starts with a dot")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// list is a copy of every key and value.
func (m *metaStore) list() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.values)
}

// set stores key=value: persisted first, so what containers see in the run
// directory has always been saved.
func (m *metaStore) set(key, value string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.values[key]; !ok && len(m.values) >= metaMaxKeys {
		return fmt.Errorf("%w: %d kept", errTooManyMeta, len(m.values))
	}
	if err := storage.WriteFileAtomic(filepath.Join(m.cache, key), []byte(value), metaFileMode); err != nil {
		return err
	}
	if err := storage.WriteFileAtomic(filepath.Join(m.run, key), []byte(value), metaFileMode); err != nil {
		return err
	}
	m.values[key] = value
	if m.onSet != nil {
		m.onSet(key, value)
	}
	return nil
}

// remove deletes key; false when there is no such key.
func (m *metaStore) remove(key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.values[key]; !ok {
		return false, nil
	}
	for _, dir := range []string{m.cache, m.run} {
		if err := os.Remove(filepath.Join(dir, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, err
		}
	}
	if err := storage.SyncDir(m.cache); err != nil {
		return true, err
	}
	delete(m.values, key)
	return true, nil
}

// userMeta and deviceMeta pick a store for the shared handlers.
func userMeta(s *Server) *metaStore {
	if s.x == nil {
		return nil
	}
	return s.x.userMeta
}

func deviceMeta(s *Server) *metaStore {
	if s.x == nil {
		return nil
	}
	return s.x.deviceMeta
}

// metaOr answers 500 when the server has no metadata directories and
// returns false.
func (s *Server) metaOr(w http.ResponseWriter, pick func(*Server) *metaStore) (*metaStore, bool) {
	m := pick(s)
	if m == nil {
		s.writeError(w, http.StatusInternalServerError, msgNoMeta)
		return nil, false
	}
	return m, true
}

// metaKeyOr picks the store and checks the key of a /user-meta/{key} or
// /device-meta/{key} request. Without metadata it answers 500, on a bad key
// 400 "Bad meta key ...", and returns false.
func (s *Server) metaKeyOr(w http.ResponseWriter, pick func(*Server) *metaStore, c *call) (*metaStore, string, bool) {
	m, ok := s.metaOr(w, pick)
	if !ok {
		return nil, "", false
	}
	key := c.args[0]
	if err := checkMetaKey(key); err != nil {
		s.writeError(w, http.StatusBadRequest, fmt.Sprintf("Bad meta key %q: %v", key, err))
		return nil, "", false
	}
	return m, key, true
}

// getMeta is GET /user-meta and GET /device-meta: {key: value, ...}.
func getMeta(pick func(*Server) *metaStore) handler {
	return func(s *Server, w http.ResponseWriter, _ *http.Request, _ *call) {
		m, ok := s.metaOr(w, pick)
		if !ok {
			return
		}
		s.writeJSON(w, http.StatusOK, m.list())
	}
}

// putMeta is PUT /user-meta/{key} and PUT /device-meta/{key}: the body is
// the value, raw.
func putMeta(pick func(*Server) *metaStore) handler {
	return func(s *Server, w http.ResponseWriter, r *http.Request, c *call) {
		m, key, ok := s.metaKeyOr(w, pick, c)
		if !ok {
			return
		}
		body, ok := s.readValue(w, r, msgNoMetaData)
		if !ok {
			return
		}
		if err := m.set(key, string(body)); errors.Is(err, errTooManyMeta) {
			s.writeError(w, http.StatusInsufficientStorage, msgTooManyMeta)
			return
		} else if err != nil {
			s.log.Error("ctrl: write metadata", "key", key, "err", err)
			if code, msg, ok := unwritable(err); ok {
				s.writeError(w, code, msg)
				return
			}
			s.writeError(w, http.StatusInternalServerError, "Cannot save metadata")
			return
		}
		writeOK(w)
	}
}

// deleteMeta is DELETE /user-meta/{key} and DELETE /device-meta/{key}.
// Deleting a user-meta key does not undo its configuration override (as
// upstream); the next boot no longer applies it.
func deleteMeta(pick func(*Server) *metaStore) handler {
	return func(s *Server, w http.ResponseWriter, _ *http.Request, c *call) {
		m, key, ok := s.metaKeyOr(w, pick, c)
		if !ok {
			return
		}
		found, err := m.remove(key)
		switch {
		case err != nil:
			s.log.Error("ctrl: delete metadata", "key", key, "err", err)
			s.writeError(w, http.StatusInternalServerError, "Cannot delete metadata")
		case !found:
			s.writeError(w, http.StatusNotFound, m.notFound)
		default:
			writeOK(w)
		}
	}
}
