package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Container is one entry of silk-cni's store, as upstream writes it:
// {"handle":<netns basename>,"ip":<container IP>,"metadata":null}.
type Container struct {
	Handle   string         `json:"handle"`
	IP       string         `json:"ip"`
	Metadata map[string]any `json:"metadata"`
}

// Store is silk-cni's container store (`datastore`, by default
// /var/vcap/data/silk/store.json): a JSON object keyed by handle, locked
// with flock on the data file itself (no separate lock or version file,
// unlike the wrapper's metadata store). silk-daemon reads it to learn
// whether containers still use its lease. Entries this code does not
// understand are carried over unchanged on rewrite.
type Store struct {
	Path string
}

// Add records handle → ip, replacing an existing entry for handle.
func (s Store) Add(handle string, ip net.IP) error {
	if handle == "" {
		return fmt.Errorf("invalid handle")
	}
	if ip == nil {
		return fmt.Errorf("invalid ip: %v", ip)
	}
	entry, err := json.Marshal(Container{Handle: handle, IP: ip.String()})
	if err != nil {
		return err
	}
	return s.update(func(m map[string]json.RawMessage) bool {
		m[handle] = entry
		return true
	})
}

// Delete removes handle; a missing entry is not an error.
func (s Store) Delete(handle string) error {
	if handle == "" {
		return fmt.Errorf("invalid handle")
	}
	return s.update(func(m map[string]json.RawMessage) bool {
		if _, ok := m[handle]; !ok {
			return false
		}
		delete(m, handle)
		return true
	})
}

// DeleteIf removes every entry for which drop returns true and returns the
// removed entries.
func (s Store) DeleteIf(drop func(Container) bool) ([]Container, error) {
	var removed []Container
	err := s.update(func(m map[string]json.RawMessage) bool {
		for k, raw := range m {
			var c Container
			if json.Unmarshal(raw, &c) != nil {
				continue
			}
			if drop(c) {
				removed = append(removed, c)
				delete(m, k)
			}
		}
		return len(removed) > 0
	})
	return removed, err
}

// ReadAll returns every entry.
func (s Store) ReadAll() (map[string]Container, error) {
	out := map[string]Container{}
	err := s.update(func(m map[string]json.RawMessage) bool {
		for k, raw := range m {
			var c Container
			if err := json.Unmarshal(raw, &c); err == nil {
				out[k] = c
			}
		}
		return false
	})
	return out, err
}

// update reads the store under an exclusive flock, lets fn change it and
// rewrites the file when fn reports a change.
func (s Store) update(fn func(map[string]json.RawMessage) bool) error {
	if s.Path == "" {
		return fmt.Errorf("datastore path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	f, err := os.OpenFile(s.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer f.Close()
	if err := flock(f); err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("decoding file: %w", err)
	}
	m := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("decoding file: %w", err)
		}
	}
	if m == nil { // the file held "null"
		m = map[string]json.RawMessage{}
	}
	if !fn(m) {
		return nil
	}
	out, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode and overwrite: %w", err)
	}
	out = append(out, '\n')
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("encode and overwrite: %w", err)
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("encode and overwrite: %w", err)
	}
	if _, err := f.Write(out); err != nil {
		return fmt.Errorf("encode and overwrite: %w", err)
	}
	return nil
}

// flock takes an exclusive lock, retrying when a signal interrupts it.
func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}
