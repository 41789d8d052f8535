package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/logtest"
)

// The lines operators and upstream's tests key on, with upstream's session
// names, levels and data.
func TestPolicyCycleLogLines(t *testing.T) {
	logger, capture := logtest.NewCapture(t, "cfnetworking.vxlan-policy-agent")
	f := newFixtureWithLogger(t, logger, false, 1)
	ctx := context.Background()
	if err := f.store.Add(ctx, "h3", "10.255.1.4", map[string]any{"space_id": "space-1"}); err != nil {
		t.Fatal(err)
	}
	f.server.set(policyAB(8080))
	if err := f.policies.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	container := func(handle, app, ip string) map[string]any {
		return map[string]any{"Handle": handle, "AppID": app, "SpaceID": "space-1", "Ports": "", "IP": ip, "Purpose": "app"}
	}
	missing := func(handle, key string) logtest.Line {
		return logtest.Line{Message: "cfnetworking.vxlan-policy-agent.rules-updater.container-metadata-policy-group-id", Level: "debug", Data: map[string]any{
			"container_handle": handle, "session": "1",
			"message": "Container metadata is missing key " + key + ". CloudController version may be out of date or apps may need to be restaged.",
		}}
	}
	got := capture.Find("cfnetworking.vxlan-policy-agent.rules-updater.got-containers")
	want := []logtest.Line{{Message: "cfnetworking.vxlan-policy-agent.rules-updater.got-containers", Level: "debug", Data: map[string]any{
		"session":    "1",
		"containers": []any{container("h2", "app-b", "10.255.1.3"), container("h1", "app-a", "10.255.1.2")},
	}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("got-containers (-want +got):\n%s", diff)
	}
	// Map order decides which container is reported first; compare as a set.
	gotMissing := map[string]logtest.Line{}
	for _, l := range capture.Find("cfnetworking.vxlan-policy-agent.rules-updater.container-metadata-policy-group-id") {
		key := "ports"
		if strings.Contains(l.Data["message"].(string), "policy_group_id") {
			key = "policy_group_id"
		}
		gotMissing[l.Data["container_handle"].(string)+" "+key] = l
	}
	if len(gotMissing) != 4 || cmp.Diff(missing("h3", "policy_group_id"), gotMissing["h3 policy_group_id"]) != "" || cmp.Diff(missing("h1", "ports"), gotMissing["h1 ports"]) != "" {
		t.Errorf("container-metadata-policy-group-id lines = %+v", gotMissing)
	}

	changed := capture.Find("cfnetworking.vxlan-policy-agent.policy-cycle.poll-cycle")
	if len(changed) != 1 || changed[0].Level != "debug" || changed[0].Data["message"] != "updating iptables rules" ||
		changed[0].Data["num old rules"] != 0.0 || changed[0].Data["num new rules"].(float64) < 2 {
		t.Errorf("policy-cycle.poll-cycle = %+v", changed)
	}

	// A failed cycle is upstream's poller line on the root logger.
	f.server.set(policyAB(9090))
	f.server.fail(errors.New("connection refused"))
	runLoopOnce(t, f)
	failed := capture.Find("cfnetworking.vxlan-policy-agent.poll-cycle")
	if len(failed) == 0 || failed[0].Level != "error" || failed[0].Data["error"] != "get-rules: failed to get policies: connection refused" {
		t.Errorf("poll-cycle = %+v", failed)
	}
	if l := capture.Find("cfnetworking.vxlan-policy-agent.policy-cycle.error-getting-policies-last-updated"); len(l) == 0 || l[0].Level != "error" {
		t.Errorf("error-getting-policies-last-updated = %+v", l)
	}
	// One session per component for the life of the agent, as upstream.
	for _, l := range capture.Find("cfnetworking.vxlan-policy-agent.rules-updater.got-containers") {
		if l.Data["session"] != "1" {
			t.Errorf("got-containers in session %v, want the one rules-updater session", l.Data["session"])
		}
	}
}

// runLoopOnce runs the policy watcher and poller until they have logged a
// failed cycle.
func runLoopOnce(t *testing.T, f *fixture) {
	t.Helper()
	defer f.run(t)()
	waitFor(t, 5*time.Second, "a failed cycle", func() bool { return counterValue(f, MetricPolicyCycleFailures) > 0 })
}

func counterValue(f *fixture, name string) uint64 {
	v, _ := f.sender.Registry().Counter(name)
	return v
}
