package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/c2c"
)

// Metric names: upstream's, plus netman's failure counters.
const (
	MetricEnforce           = "iptablesEnforceTime"
	MetricTotalPoll         = "totalPollTime"
	MetricContainerMetadata = "containerMetadataTime"
	MetricPolicyServerPoll  = "policyServerPollTime"
	MetricASGEnforce        = "asgIptablesEnforceTime"
	MetricASGCleanup        = "asgIptablesCleanupTime"
	MetricASGTotalPoll      = "asgTotalPollTime"
	MetricASGServerPoll     = "policyServerASGPollTime"
	// netman counters: failed policy cycles (the rules stay as they were),
	// failed long-polls, failed ASG polls.
	MetricPolicyCycleFailures = "policyCycleFailures"
	MetricLongPollFailures    = "policyLongPollFailures"
	MetricASGPollFailures     = "asgPollFailures"
	// MetricASGLongPollFailures counts failed long-polls of
	// security_groups_last_updated.
	MetricASGLongPollFailures = "asgLongPollFailures"
)

// PolicySource is the part of the policy-server-internal client the policy
// cycle needs.
type PolicySource interface {
	Policies(ctx context.Context, ids ...string) ([]c2c.Policy, error)
	LastUpdated(ctx context.Context) (int64, bool, error)
	WaitPolicies(ctx context.Context, since int64, ids []string, wait, grace time.Duration) (Stamp, error)
	CreateOrGetTag(ctx context.Context, id, groupType string) (string, error)
}

// forceHandler serves upstream's force endpoints (any method): a policy
// cycle, and the ASG syncs of one container (asgs nil: ASG syncing
// disabled).
func forceHandler(logger lager.Logger, policies *policyCycle, asgs *asgCycle) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/force-policy-poll-cycle", func(w http.ResponseWriter, r *http.Request) {
		if err := policies.Sync(r.Context()); err != nil {
			logger.Error("force-policy-poll-cycle", err)
			http.Error(w, "failed to force policy poll cycle: "+err.Error(), http.StatusInternalServerError)
			return
		}
	})
	asgEndpoint := func(name, fail, ok string, run func(c *asgCycle, ctx context.Context, handle string) error) {
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
			if asgs == nil {
				http.Error(w, "ASG syncing has been disabled administratively", http.StatusMethodNotAllowed)
				return
			}
			handle := r.URL.Query().Get("container")
			if handle == "" {
				http.Error(w, "no container specified", http.StatusBadRequest)
				return
			}
			if err := run(asgs, r.Context(), handle); err != nil {
				logger.Error(name, err, lager.Data{"container": handle})
				http.Error(w, fmt.Sprintf(fail, handle)+": "+err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = fmt.Fprintf(w, ok, handle)
		})
	}
	asgEndpoint("force-asgs-for-container", "failed to update asgs for container %s", "updated container %s", (*asgCycle).SyncContainer)
	asgEndpoint("force-orphaned-asgs-cleanup", "failed to cleanup ASGs for container %s", "cleaned up ASGs for container %s", (*asgCycle).Cleanup)
	return mux
}

// c2cLoggingHandler is the debug server's /iptables-c2c-logging.
func c2cLoggingHandler(policies *policyCycle) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut:
			var body struct {
				Enabled *bool `json:"enabled"`
			}
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{ "error": "decoding request body as json" }`))
				return
			}
			if body.Enabled == nil {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{ "error": "missing required key 'enabled'" }`))
				return
			}
			policies.SetC2CLogging(*body.Enabled)
		default:
			w.Header().Set("Allow", "GET, PUT")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]bool{"enabled": policies.logging.Load()})
	})
}
