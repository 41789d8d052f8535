package datastoresyncer_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
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
	"github.com/netman-release/netman/src/testsupport/eventually"
	"github.com/netman-release/netman/src/testsupport/logtest"
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

// TestLogLines pins upstream's silk-datastore-syncer lines: the debug
// trail of each container compared, the skip of a container the store
// lacks, the error lines of a container whose log_config cannot be read
// (upstream's messages, the handle in the error), and a failed cycle
// logged with upstream's message for the step that failed.
func TestLogLines(t *testing.T) {
	ctx := t.Context()
	g := gardentest.New(t)
	g.Create("changed", map[string]string{"log_config": lcNew})
	g.Create("same", map[string]string{"log_config": lcOld})
	g.Create("unknown", map[string]string{"log_config": lcOther})
	g.Create("bad-garden", map[string]string{"log_config": "{nope"})
	g.Create("bad-store", map[string]string{"log_config": lcNew})
	store := metadata.New(filepath.Join(t.TempDir(), "store.json"))
	for h, lc := range map[string]string{"changed": lcOld, "same": lcOld, "bad-garden": lcOld, "bad-store": "[1,2"} {
		if err := store.Add(ctx, h, "10.255.1.2", map[string]any{"log_config": lc}); err != nil {
			t.Fatal(err)
		}
	}
	logger, capture := logtest.NewCapture(t, "cfnetworking.silk-datastore-syncer")
	s := &datastoresyncer.Syncer{Garden: gardenclient.New("unix", g.Socket, 5*time.Second), Store: store, Logger: logger}
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	const p = "cfnetworking.silk-datastore-syncer."
	logInfo := func(lc string) map[string]any {
		var v map[string]any
		if err := json.Unmarshal([]byte(lc), &v); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"log info": v}
	}
	// Errors are compared up to the decoder's own wording; the handle and
	// upstream's text before it are pinned.
	want := []logtest.Line{
		{Message: p + "Starting sync loop", Level: "debug", Data: map[string]any{}},
		{Message: p + "Garden container", Level: "debug", Data: logInfo(lcNew)},
		{Message: p + "Datastore container", Level: "debug", Data: logInfo(lcOld)},
		{Message: p + "Datastore container reconciling with Garden container", Level: "debug", Data: map[string]any{"handle": "changed"}},
		{Message: p + "Garden container", Level: "debug", Data: logInfo(lcOld)},
		{Message: p + "Datastore container", Level: "debug", Data: logInfo(lcOld)},
		{Message: p + "They are equal no action taken", Level: "debug", Data: map[string]any{}},
		{Message: p + "skipping-container-not-found-in-networking-store", Level: "info", Data: map[string]any{"garden_container_handle": "unknown"}},
		{Message: p + "error getting garden log config", Level: "error", Data: map[string]any{"error": "Garden container: bad-garden unmarshalling container log config from datastore: "}},
		{Message: p + "Garden container", Level: "debug", Data: logInfo(lcNew)},
		{Message: p + "error getting silk log config", Level: "error", Data: map[string]any{"error": "Datastore container: bad-store: error unmarshalling container log config from datastore: "}},
	}
	trimErrors := func(lines []logtest.Line) []logtest.Line {
		var out []logtest.Line
		for _, l := range lines {
			if e, ok := l.Data["error"].(string); ok {
				l.Data["error"] = e[:strings.Index(e, "datastore: ")+len("datastore: ")]
			}
			out = append(out, l)
		}
		return out
	}
	got := trimErrors(capture.Lines())
	// Garden lists containers in any order: compare the lines as a set.
	sortBlocks := func(lines []logtest.Line) []string {
		var out []string
		for _, l := range lines {
			b, _ := json.Marshal(l)
			out = append(out, string(b))
		}
		slices.Sort(out)
		return out
	}
	if diff := cmp.Diff(sortBlocks(want), sortBlocks(got)); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}

	// A failed cycle: upstream's message, the cause as the error.
	g.Fail("")
	ctxRun, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctxRun, 10*time.Millisecond) }()
	eventually.True(t, "a failed cycle's line", 10*time.Second, func() bool {
		return len(capture.Find(p+"Garden: error retrieving containers:")) > 0
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l := capture.Find(p + "Garden: error retrieving containers:")[0]
	if e, _ := l.Data["error"].(string); l.Level != "error" || strings.HasPrefix(e, "Garden:") || e == "" {
		t.Errorf("failed cycle line %+v, want an error line whose error is the cause", l)
	}
}
