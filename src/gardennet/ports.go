package gardennet

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/netman-release/netman/src/filelock"
)

// ErrPortPoolExhausted is returned when every port of the range is taken.
var ErrPortPoolExhausted = errors.New("port pool exhausted")

// Pool is the allocation state: which handle holds which ports. On disk it
// is grouped by handle, {"acquired_ports":{"<handle>":[61000,61003]}}, as
// upstream writes it. In memory it keeps that shape, sorted by handle (the
// order encoding/json writes map keys in), so reading, changing and
// rewriting the file are each one linear pass.
type Pool struct {
	entries []poolEntry // sorted by handle, handles unique
}

type poolEntry struct {
	handle string
	ports  []uint32 // ascending
}

type poolJSON struct {
	AcquiredPorts map[string][]uint32 `json:"acquired_ports"`
}

// NewPool returns a pool holding the given ports (port -> handle, the
// shape upstream keeps in memory).
func NewPool(acquired map[uint32]string) *Pool {
	byHandle := map[string][]uint32{}
	for port, handle := range acquired {
		byHandle[handle] = append(byHandle[handle], port)
	}
	p := &Pool{}
	p.set(byHandle)
	return p
}

// set replaces the pool's contents.
func (p *Pool) set(byHandle map[string][]uint32) {
	p.entries = make([]poolEntry, 0, len(byHandle))
	for handle, ports := range byHandle {
		p.entries = append(p.entries, poolEntry{handle: handle, ports: ports})
	}
	p.normalize()
}

// normalize sorts (and dedups) each handle's ports and sorts the
// entries; one pass for what appendPool wrote. Handles must be unique.
func (p *Pool) normalize() {
	sorted := true
	for i := range p.entries {
		e := &p.entries[i]
		if !slices.IsSorted(e.ports) {
			slices.Sort(e.ports)
		}
		e.ports = slices.Compact(e.ports)
		if i > 0 && p.entries[i-1].handle > e.handle {
			sorted = false
		}
	}
	if !sorted {
		slices.SortFunc(p.entries, func(a, b poolEntry) int { return cmp.Compare(a.handle, b.handle) })
	}
}

// Acquired returns every held port and its handle.
func (p *Pool) Acquired() map[uint32]string {
	out := map[uint32]string{}
	for _, e := range p.entries {
		for _, port := range e.ports {
			out[port] = e.handle
		}
	}
	return out
}

// Ports returns the ports handle holds, ascending.
func (p *Pool) Ports(handle string) []uint32 {
	if i, ok := p.find(handle); ok {
		return slices.Clone(p.entries[i].ports)
	}
	return nil
}

func (p *Pool) find(handle string) (int, bool) {
	return slices.BinarySearchFunc(p.entries, handle, func(e poolEntry, h string) int { return cmp.Compare(e.handle, h) })
}

// MarshalJSON writes the on-disk form.
func (p *Pool) MarshalJSON() ([]byte, error) {
	return appendPool(nil, p), nil
}

// UnmarshalJSON reads the on-disk form.
func (p *Pool) UnmarshalJSON(b []byte) error {
	return decodePool(b, p)
}

// Range is the allocatable ports, [Start, Start+Size).
type Range struct {
	Start, Size uint32
}

// Contains reports whether port is in the range.
func (r Range) Contains(port uint32) bool {
	return port >= r.Start && port-r.Start < r.Size
}

// Acquire assigns the n lowest free ports of r to handle, so released ports
// are reused lowest first. On exhaustion nothing is assigned.
func (p *Pool) Acquire(r Range, handle string, n int) ([]uint32, error) {
	// One pass marks the taken ports of the range in a bitmap.
	taken := make([]uint64, (r.Size+63)/64)
	for _, e := range p.entries {
		for _, port := range e.ports {
			if r.Contains(port) {
				i := port - r.Start
				taken[i/64] |= 1 << (i % 64)
			}
		}
	}
	got := make([]uint32, 0, n)
	for i := uint32(0); i < r.Size && len(got) < n; i++ {
		if taken[i/64]&(1<<(i%64)) == 0 {
			got = append(got, r.Start+i)
		}
	}
	if len(got) < n {
		return nil, ErrPortPoolExhausted
	}
	i, ok := p.find(handle)
	if !ok {
		p.entries = slices.Insert(p.entries, i, poolEntry{handle: handle})
	}
	e := &p.entries[i]
	e.ports = append(slices.Clip(e.ports), got...)
	slices.Sort(e.ports)
	return got, nil
}

// ReleaseAll frees every port handle holds; it reports whether it held any.
func (p *Pool) ReleaseAll(handle string) bool {
	i, ok := p.find(handle)
	if ok {
		p.entries = slices.Delete(p.entries, i, i+1)
	}
	return ok
}

// PortAllocator keeps the pool in the state file. Each call locks the
// file itself with flock (as upstream, so both can share a cell's file),
// reads it whole, changes it and rewrites it in place before unlocking.
type PortAllocator struct {
	StateFile string
	Range     Range
}

// Acquire allocates n ports to handle in one read-modify-write.
func (a *PortAllocator) Acquire(ctx context.Context, handle string, n int) ([]uint32, error) {
	var got []uint32
	err := a.update(ctx, func(p *Pool) (bool, error) {
		var err error
		if got, err = p.Acquire(a.Range, handle, n); err != nil {
			return false, fmt.Errorf("acquire port: %w", err)
		}
		return true, nil
	})
	return got, err
}

// ReleaseAll frees every port of handle; an unknown handle is no error.
func (a *PortAllocator) ReleaseAll(ctx context.Context, handle string) error {
	return a.update(ctx, func(p *Pool) (bool, error) {
		return p.ReleaseAll(handle), nil
	})
}

// update runs change on the pool under the lock and writes the pool back
// when change reports a modification.
func (a *PortAllocator) update(ctx context.Context, change func(*Pool) (bool, error)) error {
	unlock, err := filelock.New(a.StateFile).Acquire(ctx)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer unlock()
	f, err := os.OpenFile(a.StateFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if fi, err := f.Stat(); err == nil {
		buf.Grow(int(fi.Size()) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(f); err != nil {
		return fmt.Errorf("decoding state file: %w", err)
	}
	data := buf.Bytes()
	pool := &Pool{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := decodePool(data, pool); err != nil {
			return fmt.Errorf("decoding state file: %w", err)
		}
	}
	changed, err := change(pool)
	if err != nil || !changed {
		return err
	}
	out := append(appendPool(data[:0], pool), '\n')
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("encode and overwrite: %w", err)
	}
	if _, err := f.WriteAt(out, 0); err != nil {
		return fmt.Errorf("encode and overwrite: %w", err)
	}
	return nil
}
