package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// countContainers counts the entries of silk-cni's container store (a JSON
// object keyed by network namespace, see src/silk/cni.Store), read under a
// shared flock on the file itself, which silk-cni locks exclusively while it
// writes. A missing
// or empty store holds no containers.
func countContainers(path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("lock: %w", err)
	}
	// Closing the file releases the lock.
	var entries map[string]json.RawMessage
	if err := json.NewDecoder(f).Decode(&entries); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("decoding file: %w", err)
	}
	return len(entries), nil
}
