// Package datastoresyncer is silk-datastore-syncer: it keeps the log_config
// of every container in the container metadata store equal to what Garden
// holds for it. Diego can change a running app's log_config (an app
// rename changes its app_name tag); cni-wrapper-plugin recorded it only
// when the container was created, and vxlan-policy-agent sends the app log
// lines of the container's security group rules with it.
//
// Like upstream's syncer it only updates containers the store already
// has, never adds or removes one, and leaves every other metadata key as
// it is. Unlike upstream it fetches Garden's properties only for
// containers the store has, and writes all of a cycle's changes in one
// store transaction.
package datastoresyncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/gardenclient"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
)

// Garden is the part of Garden's API the syncer reads.
type Garden interface {
	Ping(ctx context.Context) error
	Containers(ctx context.Context, filter map[string]string) ([]string, error)
	Properties(ctx context.Context, handle string) (map[string]string, error)
}

// Store is the container metadata store.
type Store interface {
	ReadAll(ctx context.Context) (map[string]metadata.Container, error)
	Modify(ctx context.Context, change func(pool map[string]metadata.Container) bool) error
}

// Syncer copies Garden's log_config into the metadata store.
type Syncer struct {
	Garden Garden
	Store  Store
	Logger lager.Logger
}

// Stats is what one cycle did.
type Stats struct {
	Garden  int // containers Garden has
	Skipped int // Garden containers the store does not have
	Failed  int // containers whose log_config could not be read or decoded
	Updated int // store entries whose log_config changed
}

// WaitForGarden pings Garden every retry until it answers. Garden's
// UnrecoverableError ends the wait with an error, as does ctx.
func (s *Syncer) WaitForGarden(ctx context.Context, retry time.Duration) error {
	for {
		s.Logger.Debug("Attempting to ping Garden")
		err := s.Garden.Ping(ctx)
		if err == nil {
			return nil
		}
		if gardenclient.Unrecoverable(err) {
			return fmt.Errorf("Garden: unrecoverable: %w", err)
		}
		s.Logger.Error("Garden: cannot connect", err)
		if !lifecycle.Sleep(ctx, retry) {
			return ctx.Err()
		}
	}
}

// Run syncs now and then every interval until ctx ends. A failed cycle is
// logged with upstream's message for what failed, and the next one
// retries.
func (s *Syncer) Run(ctx context.Context, interval time.Duration) error {
	for {
		if _, err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			var ce *CycleError
			if errors.As(err, &ce) {
				s.Logger.Error(ce.Message, ce.Err)
			} else {
				s.Logger.Error("sync", err)
			}
		}
		if !lifecycle.Sleep(ctx, interval) {
			return nil
		}
	}
}

// CycleError is a failed cycle: Message is upstream's log message for the
// step that failed ("Garden: error retrieving containers:", ...), Err the
// cause, logged as the line's error.
type CycleError struct {
	Message string
	Err     error
}

func (e *CycleError) Error() string { return e.Message + " " + e.Err.Error() }
func (e *CycleError) Unwrap() error { return e.Err }

// Upstream's messages for a failed cycle.
const (
	msgGardenContainers = "Garden: error retrieving containers:"
	msgStoreContainers  = "Datastore: error retrieving containers from datastore:"
	msgUpdate           = "Error updating log config"
)

// change is one store entry's new log_config.
type change struct {
	handle string
	// was is the store's log_config string the decision was made on.
	was, want string
}

// Sync runs one cycle. It fails only when Garden's container list or the
// store cannot be read or written; a container whose properties cannot be
// read is logged, counted and left as it is.
func (s *Syncer) Sync(ctx context.Context) (Stats, error) {
	s.Logger.Debug("Starting sync loop")
	var st Stats
	handles, err := s.Garden.Containers(ctx, nil)
	if err != nil {
		return st, &CycleError{msgGardenContainers, err}
	}
	st.Garden = len(handles)
	stored, err := s.Store.ReadAll(ctx)
	if err != nil {
		return st, &CycleError{msgStoreContainers, err}
	}
	var changes []change
	for _, h := range handles {
		sc, ok := stored[h]
		if !ok {
			st.Skipped++
			s.Logger.Info("skipping-container-not-found-in-networking-store", lager.Data{"garden_container_handle": h})
			continue
		}
		c, msg, err := s.compare(ctx, sc)
		if err != nil {
			st.Failed++
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			s.Logger.Error(msg, err)
			continue
		}
		if c != nil {
			s.Logger.Debug("Datastore container reconciling with Garden container", lager.Data{"handle": h})
			changes = append(changes, *c)
		}
	}
	if len(changes) == 0 {
		return st, nil
	}
	err = s.Store.Modify(ctx, func(pool map[string]metadata.Container) bool {
		for _, c := range changes {
			cur, ok := pool[c.handle]
			if !ok {
				continue // destroyed meanwhile
			}
			if was, _ := cur.Metadata[metadata.LogConfigKey].(string); was != c.was {
				continue // rewritten meanwhile: the next cycle compares again
			}
			md := maps.Clone(cur.Metadata)
			if md == nil {
				md = map[string]any{}
			}
			md[metadata.LogConfigKey] = c.want
			cur.Metadata = md
			pool[c.handle] = cur
			st.Updated++
		}
		return st.Updated > 0
	})
	if err != nil {
		st.Updated = 0
		return st, &CycleError{msgUpdate, err}
	}
	return st, nil
}

// compare decides whether a store entry's log_config differs from
// Garden's; nil when it does not. Both sides are compared decoded, as
// upstream does: a missing log_config is the zero LogConfig, and the store
// gets Garden's re-encoded. A failure comes with upstream's log message
// for the side that failed.
func (s *Syncer) compare(ctx context.Context, sc metadata.Container) (*change, string, error) {
	const msgGarden, msgStore = "error getting garden log config", "error getting silk log config"
	props, err := s.Garden.Properties(ctx, sc.Handle)
	if err != nil {
		return nil, msgGarden, fmt.Errorf("Garden container: %s: error retrieving properties: %w", sc.Handle, err)
	}
	var want metadata.LogConfig
	if raw, ok := props[metadata.LogConfigKey]; ok {
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			// Upstream's text, "from datastore" although Garden's side failed.
			return nil, msgGarden, fmt.Errorf("Garden container: %s unmarshalling container log config from datastore: %w", sc.Handle, err)
		}
	}
	s.Logger.Debug("Garden container", lager.Data{"log info": want})
	var have metadata.LogConfig
	was, ok := sc.Metadata[metadata.LogConfigKey].(string)
	if ok {
		if err := json.Unmarshal([]byte(was), &have); err != nil {
			return nil, msgStore, fmt.Errorf("Datastore container: %s: error unmarshalling container log config from datastore: %w", sc.Handle, err)
		}
	}
	s.Logger.Debug("Datastore container", lager.Data{"log info": have})
	if reflect.DeepEqual(want, have) {
		s.Logger.Debug("They are equal no action taken")
		return nil, "", nil
	}
	b, err := json.Marshal(want)
	if err != nil {
		return nil, "Garden container error marshalling container log config", err
	}
	return &change{handle: sc.Handle, was: was, want: string(b)}, "", nil
}
