package gardennet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// BindMounter keeps a network namespace alive after its process is gone by
// bind-mounting it onto a file, where CNI plugins find it (CNI_NETNS).
type BindMounter struct{}

// Mount bind-mounts source onto target, creating target's directory (0700)
// and an empty file to mount over. When target already is source (a
// repeated up), it does nothing rather than stacking a second mount that
// one unmount would not remove.
func (BindMounter) Mount(source, target string) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return fmt.Errorf("os.MkdirAll failed: %w", err)
	}
	if same(source, target) {
		return nil
	}
	f, err := os.Create(target)
	if err != nil {
		return fmt.Errorf("os.Create failed: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("os.Create failed: %w", err)
	}
	if err := unix.Mount(source, target, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("mount failed: %w", err)
	}
	return nil
}

// Unmount detaches the mount on target (lazily: a plugin may still hold
// the namespace open) and removes the file. A target that is missing or
// not mounted is no error, so down can be repeated.
func (BindMounter) Unmount(target string) error {
	if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount: %w", err)
	}
	return os.RemoveAll(target)
}

func same(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}
