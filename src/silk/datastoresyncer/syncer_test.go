package datastoresyncer_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/gardenclient"
	"github.com/netman-release/netman/src/gardenclient/gardentest"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/silk/datastoresyncer"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

const (
	lcOld   = `{"guid":"app1","index":0,"source_name":"CELL","tags":{"app_name":"old"}}`
	lcNew   = `{"guid":"app1","index":0,"source_name":"CELL","tags":{"app_name":"new"}}`
	lcOther = `{"guid":"app2","index":1,"source_name":"CELL","tags":{"app_name":"two"}}`
)

type entry struct {
	ip string
	md map[string]any
}

func TestSync(t *testing.T) {
	tests := []struct {
		name   string
		garden map[string]map[string]string
		store  map[string]entry
		want   map[string]metadata.Container
		stats  datastoresyncer.Stats
		writes int // store writes the cycle makes
	}{
		{
			name:   "an app rename reaches the store; other keys stay",
			garden: map[string]map[string]string{"c1": {"log_config": lcNew, "network.app_id": "app1"}},
			store:  map[string]entry{"c1": {"10.255.1.2", map[string]any{"log_config": lcOld, "app_id": "app1", "space_id": "s"}}},
			want: map[string]metadata.Container{"c1": {Handle: "c1", IP: "10.255.1.2",
				Metadata: map[string]any{"log_config": lcNew, "app_id": "app1", "space_id": "s"}}},
			stats:  datastoresyncer.Stats{Garden: 1, Updated: 1},
			writes: 1,
		},
		{
			name:   "equal once decoded: nothing is written",
			garden: map[string]map[string]string{"c1": {"log_config": `{"tags":{"app_name":"old"},"source_name":"CELL", "guid":"app1"}`}},
			store:  map[string]entry{"c1": {"10.255.1.2", map[string]any{"log_config": lcOld}}},
			want: map[string]metadata.Container{"c1": {Handle: "c1", IP: "10.255.1.2",
				Metadata: map[string]any{"log_config": lcOld}}},
			stats: datastoresyncer.Stats{Garden: 1},
		},
		{
			name: "no entries added for containers the store lacks, none removed for containers Garden lacks",
			garden: map[string]map[string]string{
				"unknown": {"log_config": lcOther},
				"c1":      {"log_config": lcNew},
			},
			store: map[string]entry{
				"c1":   {"10.255.1.2", map[string]any{"log_config": lcOld}},
				"gone": {"10.255.1.3", map[string]any{"log_config": lcOther}},
			},
			want: map[string]metadata.Container{
				"c1":   {Handle: "c1", IP: "10.255.1.2", Metadata: map[string]any{"log_config": lcNew}},
				"gone": {Handle: "gone", IP: "10.255.1.3", Metadata: map[string]any{"log_config": lcOther}},
			},
			stats:  datastoresyncer.Stats{Garden: 2, Skipped: 1, Updated: 1},
			writes: 1,
		},
		{
			name:   "an entry without metadata gets the log_config",
			garden: map[string]map[string]string{"c1": {"log_config": lcNew}},
			store:  map[string]entry{"c1": {"10.255.1.2", nil}},
			want: map[string]metadata.Container{"c1": {Handle: "c1", IP: "10.255.1.2",
				Metadata: map[string]any{"log_config": lcNew}}},
			stats:  datastoresyncer.Stats{Garden: 1, Updated: 1},
			writes: 1,
		},
		{
			name:   "Garden without a log_config: the store gets the empty one, as upstream",
			garden: map[string]map[string]string{"c1": {}},
			store:  map[string]entry{"c1": {"10.255.1.2", map[string]any{"log_config": lcOld}}},
			want: map[string]metadata.Container{"c1": {Handle: "c1", IP: "10.255.1.2",
				Metadata: map[string]any{"log_config": `{"guid":"","index":0,"source_name":"","tags":null}`}}},
			stats:  datastoresyncer.Stats{Garden: 1, Updated: 1},
			writes: 1,
		},
		{
			name: "a log_config that does not decode, on either side, leaves that entry alone",
			garden: map[string]map[string]string{
				"bad-garden": {"log_config": "{nope"},
				"bad-store":  {"log_config": lcNew},
				"c1":         {"log_config": lcNew},
			},
			store: map[string]entry{
				"bad-garden": {"10.255.1.4", map[string]any{"log_config": lcOld}},
				"bad-store":  {"10.255.1.5", map[string]any{"log_config": "[1,2"}},
				"c1":         {"10.255.1.2", map[string]any{"log_config": lcOld}},
			},
			want: map[string]metadata.Container{
				"bad-garden": {Handle: "bad-garden", IP: "10.255.1.4", Metadata: map[string]any{"log_config": lcOld}},
				"bad-store":  {Handle: "bad-store", IP: "10.255.1.5", Metadata: map[string]any{"log_config": "[1,2"}},
				"c1":         {Handle: "c1", IP: "10.255.1.2", Metadata: map[string]any{"log_config": lcNew}},
			},
			stats:  datastoresyncer.Stats{Garden: 3, Failed: 2, Updated: 1},
			writes: 1,
		},
		{
			name: "several changes are one write",
			garden: map[string]map[string]string{
				"c1": {"log_config": lcNew},
				"c2": {"log_config": lcOther},
			},
			store: map[string]entry{
				"c1": {"10.255.1.2", map[string]any{"log_config": lcOld}},
				"c2": {"10.255.1.3", map[string]any{"log_config": lcOld}},
			},
			want: map[string]metadata.Container{
				"c1": {Handle: "c1", IP: "10.255.1.2", Metadata: map[string]any{"log_config": lcNew}},
				"c2": {Handle: "c2", IP: "10.255.1.3", Metadata: map[string]any{"log_config": lcOther}},
			},
			stats:  datastoresyncer.Stats{Garden: 2, Updated: 2},
			writes: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			g := gardentest.New(t)
			for h, p := range tc.garden {
				g.Create(h, p)
			}
			store := metadata.New(filepath.Join(t.TempDir(), "store.json"))
			for h, e := range tc.store {
				if err := store.Add(ctx, h, e.ip, e.md); err != nil {
					t.Fatal(err)
				}
			}
			v0, _ := store.Version()
			s := &datastoresyncer.Syncer{
				Garden: gardenclient.New("unix", g.Socket, 5*time.Second),
				Store:  store,
				Logger: lager.NewLogger("test"),
			}
			st, err := s.Sync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.stats, st); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			got, err := metadata.New(store.Path()).ReadAll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("store (-want +got):\n%s", diff)
			}
			if v, _ := store.Version(); v-v0 != tc.writes {
				t.Errorf("%d store writes, want %d", v-v0, tc.writes)
			}
			// A second cycle finds nothing to do.
			if st, err := s.Sync(ctx); err != nil || st.Updated != 0 {
				t.Errorf("second cycle: %+v %v", st, err)
			}
		})
	}
}

func TestSyncFailuresLeaveTheStore(t *testing.T) {
	ctx := t.Context()
	g := gardentest.New(t)
	g.Create("c1", map[string]string{"log_config": lcNew})
	store := metadata.New(filepath.Join(t.TempDir(), "store.json"))
	if err := store.Add(ctx, "c1", "10.255.1.2", map[string]any{"log_config": lcOld}); err != nil {
		t.Fatal(err)
	}
	s := &datastoresyncer.Syncer{Garden: gardenclient.New("unix", g.Socket, 5*time.Second), Store: store, Logger: lager.NewLogger("test")}

	g.Fail("")
	if _, err := s.Sync(ctx); err == nil || !strings.HasPrefix(err.Error(), "Garden: error retrieving containers: ") {
		t.Errorf("Garden down: %v", err)
	}
	got, _ := store.ReadAll(ctx)
	if got["c1"].Metadata["log_config"] != lcOld {
		t.Errorf("store changed while Garden was down: %v", got)
	}

	// The store is garbage: the cycle fails and nothing is written.
	g.Recover()
	broken := metadata.New(filepath.Join(t.TempDir(), "store.json"))
	if err := broken.Add(ctx, "c1", "10.255.1.2", nil); err != nil {
		t.Fatal(err)
	}
	configtest.WriteFile(t, broken.Path(), "{garbage")
	configtest.WriteFile(t, broken.VersionPath(), "99")
	s.Store = broken
	if _, err := s.Sync(ctx); err == nil || !strings.HasPrefix(err.Error(), "Datastore: error retrieving containers from datastore: ") {
		t.Errorf("garbage store: %v", err)
	}
}

func TestWaitForGarden(t *testing.T) {
	g := gardentest.New(t)
	s := &datastoresyncer.Syncer{Garden: gardenclient.New("unix", g.Socket, time.Second), Logger: lager.NewLogger("test")}

	g.Fail(gardenclient.TypeUnrecoverable)
	if err := s.WaitForGarden(t.Context(), time.Millisecond); err == nil || !gardenclient.Unrecoverable(err) {
		t.Errorf("unrecoverable Garden: %v", err)
	}

	g.Fail(gardenclient.TypeServiceUnavailable)
	done := make(chan error, 1)
	go func() { done <- s.WaitForGarden(t.Context(), 5*time.Millisecond) }()
	for g.Requests()["GET /ping"] < 4 {
		time.Sleep(time.Millisecond)
	}
	g.Recover()
	if err := <-done; err != nil {
		t.Errorf("Garden came back: %v", err)
	}

	g.Fail("")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.WaitForGarden(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}
