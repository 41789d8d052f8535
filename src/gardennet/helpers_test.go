package gardennet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/containernetworking/cni/pkg/types"
)

// fakeCNI is a CNI chain that remembers what it was asked for: each ADD
// records the container until its DEL.
type fakeCNI struct {
	mu     sync.Mutex
	result types.Result
	addErr error
	delErr error
	added  map[string]fakeAdd // by handle
	calls  []string
}

type fakeAdd struct {
	NSPath        string
	Metadata      map[string]any
	RuntimeConfig map[string]any
}

func (f *fakeCNI) Up(_ context.Context, nsPath, handle string, metadata, runtimeConfig map[string]any) (types.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "add "+handle)
	if f.addErr != nil {
		return nil, f.addErr
	}
	if f.added == nil {
		f.added = map[string]fakeAdd{}
	}
	// Round-trip through JSON: what a plugin would see.
	var rc map[string]any
	b, err := json.Marshal(runtimeConfig)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &rc); err != nil {
		return nil, err
	}
	f.added[handle] = fakeAdd{NSPath: nsPath, Metadata: metadata, RuntimeConfig: rc}
	return f.result, nil
}

func (f *fakeCNI) Down(_ context.Context, nsPath, handle string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "del "+handle)
	if f.delErr != nil {
		return f.delErr
	}
	delete(f.added, handle)
	return nil
}

// fakeMounter is a mount table.
type fakeMounter struct {
	mounts     map[string]string // target -> source
	mountErr   error
	unmountErr error
}

func (f *fakeMounter) Mount(source, target string) error {
	if f.mountErr != nil {
		return f.mountErr
	}
	if f.mounts == nil {
		f.mounts = map[string]string{}
	}
	f.mounts[target] = source
	return nil
}

func (f *fakeMounter) Unmount(target string) error {
	if f.unmountErr != nil {
		return f.unmountErr
	}
	delete(f.mounts, target)
	return nil
}

// fakePorts is an in-memory Pool.
type fakePorts struct {
	pool       Pool
	rng        Range
	releaseErr error
}

func (f *fakePorts) Acquire(_ context.Context, handle string, n int) ([]uint32, error) {
	got, err := f.pool.Acquire(f.rng, handle, n)
	if err != nil {
		return nil, fmt.Errorf("acquire port: %w", err)
	}
	return got, nil
}

func (f *fakePorts) ReleaseAll(_ context.Context, handle string) error {
	if f.releaseErr != nil {
		return f.releaseErr
	}
	f.pool.ReleaseAll(handle)
	return nil
}

func (f *fakePorts) held(handle string) []uint32 { return f.pool.Ports(handle) }

// fakeProxy records the namespaces it redirected.
type fakeProxy struct {
	applied []string
	err     error
}

func (f *fakeProxy) Apply(_ context.Context, nsPath string) error {
	if f.err != nil {
		return f.err
	}
	f.applied = append(f.applied, nsPath)
	return nil
}

var errBoom = errors.New("boom")

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
