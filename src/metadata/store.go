// Package metadata is the container metadata store: one JSON file mapping
// each container handle to its overlay IP and garden metadata, written by
// cni-wrapper-plugin (and silk-datastore-syncer) and read by the policy
// agent, iptables-logger and the drain script. The on-disk format, file
// names and locking are upstream's (lib/datastore), so upstream and netman
// processes can share a store:
//
//	<file>          {"<handle>":{"handle":"<handle>","ip":"<ip>","metadata":{...}|null},...}\n
//	<file>_version  decimal integer, missing or empty = 1, +1 on every write
//	<file>_lock     flock(LOCK_EX) around every read-modify-write
//
// Writers replace the data and version files atomically (write a temporary
// file, fsync, rename), so a reader that does not take the lock, or a crash
// mid-write, never sees a half-written file.
package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/netman-release/netman/src/filelock"
)

// Container is one store entry.
type Container struct {
	Handle   string         `json:"handle"`
	IP       string         `json:"ip"`
	Metadata map[string]any `json:"metadata"`
}

// ErrEntryNotExist is returned by Update for an unknown handle.
var ErrEntryNotExist = errors.New("entry does not exist")

// Store reads and writes one store file. Safe for concurrent use; several
// Stores (and processes) on the same file serialise on the lock file.
type Store struct {
	path  string
	owner string
	group string
	lock  *filelock.Lock

	cacheMu      sync.RWMutex
	cacheVersion int
	cache        map[string]Container
}

// Option configures a Store.
type Option func(*Store)

// WithOwner chowns the data, version and lock files to user:group after every
// write (upstream runs the wrapper as root and readers as vcap). Both must be
// set for it to apply.
func WithOwner(user, group string) Option {
	return func(s *Store) { s.owner, s.group = user, group }
}

// New returns the store at path (…/store.json); the version and lock files
// sit next to it.
func New(path string, opts ...Option) *Store {
	s := &Store{path: path, lock: filelock.New(path + "_lock")}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Path is the data file.
func (s *Store) Path() string { return s.path }

// VersionPath is the version file.
func (s *Store) VersionPath() string { return s.path + "_version" }

// LockPath is the lock file.
func (s *Store) LockPath() string { return s.path + "_lock" }

func validate(handle, ip string) error {
	if handle == "" {
		return fmt.Errorf("invalid handle")
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return fmt.Errorf("invalid ip: %v", ip)
	}
	return nil
}

// Add records (or replaces) a container.
func (s *Store) Add(ctx context.Context, handle, ip string, metadata map[string]any) error {
	return s.put(ctx, handle, ip, metadata, false)
}

// Update replaces an existing container's entry; ErrEntryNotExist otherwise.
func (s *Store) Update(ctx context.Context, handle, ip string, metadata map[string]any) error {
	return s.put(ctx, handle, ip, metadata, true)
}

func (s *Store) put(ctx context.Context, handle, ip string, metadata map[string]any, update bool) error {
	if err := validate(handle, ip); err != nil {
		return err
	}
	return s.modify(ctx, func(pool map[string]Container) error {
		if _, ok := pool[handle]; !ok && update {
			return ErrEntryNotExist
		}
		pool[handle] = Container{Handle: handle, IP: ip, Metadata: metadata}
		return nil
	})
}

// Delete removes a container and returns what was stored (zero Container
// when the handle was unknown, which is not an error, as upstream).
func (s *Store) Delete(ctx context.Context, handle string) (Container, error) {
	if handle == "" {
		return Container{}, fmt.Errorf("invalid handle")
	}
	var deleted Container
	err := s.modify(ctx, func(pool map[string]Container) error {
		deleted = pool[handle]
		delete(pool, handle)
		return nil
	})
	return deleted, err
}

// ReadAll returns every container. It re-reads the file (under the lock)
// only when the version file changed since the last read; callers must not
// modify the returned map.
func (s *Store) ReadAll(ctx context.Context) (map[string]Container, error) {
	v, err := s.readVersion()
	if err != nil {
		return nil, err
	}
	s.cacheMu.RLock()
	if s.cache != nil && v == s.cacheVersion {
		pool := s.cache
		s.cacheMu.RUnlock()
		return pool, nil
	}
	s.cacheMu.RUnlock()

	unlock, err := s.lock.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	defer unlock()
	pool, err := s.readData()
	if err != nil {
		return nil, err
	}
	// The version again, now that no writer can run.
	if v, err = s.readVersion(); err != nil {
		return nil, err
	}
	s.cacheMu.Lock()
	s.cache, s.cacheVersion = pool, v
	s.cacheMu.Unlock()
	return pool, nil
}

// Version returns the current version counter.
func (s *Store) Version() (int, error) { return s.readVersion() }

// Modify hands change every container, read under the lock; when change
// reports that it changed the map, the store is written once (one version
// bump however many entries changed). change must not keep the map.
func (s *Store) Modify(ctx context.Context, change func(pool map[string]Container) (changed bool)) error {
	return s.modify(ctx, func(pool map[string]Container) error {
		if !change(pool) {
			return errUnchanged
		}
		return nil
	})
}

// errUnchanged tells modify to write nothing.
var errUnchanged = errors.New("unchanged")

func (s *Store) modify(ctx context.Context, change func(map[string]Container) error) error {
	unlock, err := s.lock.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer unlock()
	pool, err := s.readData()
	if err != nil {
		return err
	}
	if err := change(pool); errors.Is(err, errUnchanged) {
		return nil
	} else if err != nil {
		return err
	}
	data, err := encode(pool)
	if err != nil {
		return fmt.Errorf("encode and overwrite: %w", err)
	}
	if err := writeAtomic(s.path, data); err != nil {
		return fmt.Errorf("encode and overwrite: %w", err)
	}
	v, err := s.readVersion()
	if err != nil {
		return err
	}
	if err := writeAtomic(s.VersionPath(), []byte(strconv.Itoa(v+1))); err != nil {
		return fmt.Errorf("write version file: %w", err)
	}
	return s.chown()
}

// encode writes the pool as upstream's serializer does: compact JSON, keys
// sorted, HTML-escaped, one trailing newline.
func encode(pool map[string]Container) ([]byte, error) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(pool); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (s *Store) readData() (map[string]Container, error) {
	pool := map[string]Container{}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return pool, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open data file: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return pool, nil
	}
	if err := json.Unmarshal(data, &pool); err != nil {
		return nil, fmt.Errorf("decoding file: %w", err)
	}
	if pool == nil { // the file held "null"
		pool = map[string]Container{}
	}
	return pool, nil
}

func (s *Store) readVersion() (int, error) {
	data, err := os.ReadFile(s.VersionPath())
	if errors.Is(err, os.ErrNotExist) {
		return 1, nil
	}
	if err != nil {
		return 1, fmt.Errorf("open version file: %w", err)
	}
	txt := strings.TrimSpace(string(data))
	if txt == "" {
		return 1, nil
	}
	v, err := strconv.Atoi(txt)
	if err != nil {
		return 1, fmt.Errorf("version file: '%s' is not a number", data)
	}
	return v, nil
}

// writeAtomic replaces path with data (mode 0600) via a synced temporary
// file and a rename.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (s *Store) chown() error {
	if s.owner == "" || s.group == "" {
		return nil
	}
	uid, gid, err := LookupOwner(s.owner, s.group)
	if err != nil {
		return err
	}
	for _, p := range []string{s.LockPath(), s.path, s.VersionPath()} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// LookupOwner resolves a user and a group name to ids.
func LookupOwner(owner, group string) (uid, gid int, err error) {
	u, err := user.Lookup(owner)
	if err != nil {
		return 0, 0, err
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, 0, err
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, err
	}
	if gid, err = strconv.Atoi(g.Gid); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}
