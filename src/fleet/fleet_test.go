package fleet

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MaybeServe()
	os.Exit(m.Run())
}

// Every scenario at 20 cells, in both modes: the fleet converges, every
// change reaches its cell, restarted cells and a restarted server lose no
// rule and leave no cell stale, a slow database costs no rule and the
// cells catch up, and every lease cell holds every route.
func TestScenarios(t *testing.T) {
	for _, mode := range []string{ModeLongPoll, ModePoll} {
		t.Run(mode, func(t *testing.T) {
			var log strings.Builder
			opts := Options{
				Cells: 20, Apps: 100, Policies: 200, Mode: mode, Dir: t.TempDir(),
				PollSeconds: 1, LeasePollSeconds: 1, Changes: 3, Restart: 5, Leases: 30,
				Idle: time.Second, Warmup: time.Millisecond, SlowDB: 300 * time.Millisecond, SlowFor: 3 * time.Second,
				StaleAfter: 20 * time.Second, Log: &log,
			}
			scenarios := []int{1, 2, 3, 4, 6}
			if mode == ModeLongPoll {
				scenarios = append(scenarios, 5)
			}
			r, err := Run(context.Background(), opts, scenarios)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			var out strings.Builder
			r.Print(&out)
			t.Log(out.String())
			if r.Steady.RequestsPerSec == 0 && mode == ModePoll {
				t.Error("no plain polls measured in poll mode")
			}
			if r.Change.Stale != 0 || r.Change.All.N != 2*opts.Changes {
				t.Errorf("changes: %d of %d enforced, %d stale", r.Change.All.N, 2*opts.Changes, r.Change.Stale)
			}
			if r.Restart.StaleAfter != 0 || r.Restart.RulesLost != 0 || r.Restart.Changes.N == 0 {
				t.Errorf("cells restart: %+v", *r.Restart)
			}
			if r.PSI.StaleAfter != 0 || r.PSI.RulesLost != 0 || r.PSI.Changes.N == 0 {
				t.Errorf("policy-server-internal restart: %+v", *r.PSI)
			}
			if r.SlowDB.Stale != 0 || r.SlowDB.RulesLost != 0 {
				t.Errorf("slow database: %+v", *r.SlowDB)
			}
			if l := r.Leases; l != nil && (l.Converged != l.Cells || l.Renew.N == 0) {
				t.Errorf("leases: %+v", *l)
			}
		})
	}
}
