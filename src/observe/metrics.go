package observe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/jsonhttp"
)

// PathMetrics is the agent debug server's Prometheus endpoint; with
// enable_app_metrics it carries the per-app series
// (docs/observability.md#per-app-metrics).
const PathMetrics = "/metrics"

// appSeriesPrefix starts the per-app families' names:
// netman_app_network_{bytes,packets,connections}_total.
const appSeriesPrefix = "netman_app_network_"

// AppMetricsSource is CellMetrics' Activity.Source.
const AppMetricsSource = "per-app metrics (vxlan-policy-agent)"

// Metrics is GET /metrics: the agent's Prometheus text.
func (d *AgentDebug) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.c.Base+PathMetrics, nil)
	if err != nil {
		return "", err
	}
	resp, err := d.c.HTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &jsonhttp.StatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	return string(b), nil
}

// MetricsCell is a cell whose agent serves Prometheus metrics (AgentDebug).
type MetricsCell interface {
	Name() string
	Metrics(ctx context.Context) (string, error)
}

// CellMetrics is an ActivitySource: the app's per-app series on the
// cells' agents, summed over its instances, as counters named "<what>
// <direction>[ <verdict>]" ("bytes in", "connections in denied"). A cell
// whose agent has no per-app series adds nothing; a cell that fails is a
// problem, and the error is returned only when no cell answered.
type CellMetrics []MetricsCell

// Activity sums the app's series over the cells.
func (cs CellMetrics) Activity(ctx context.Context, guid string) (Activity, error) {
	a := Activity{Source: AppMetricsSource, Counters: map[string]float64{}}
	var errs []error
	answered := 0
	for _, c := range cs {
		text, err := c.Metrics(ctx)
		var se *jsonhttp.StatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name(), err))
			continue
		}
		answered++
		for k, v := range AppCounters(text, guid) {
			a.Counters[k] += v
		}
	}
	if answered == 0 && len(errs) > 0 {
		return a, errors.Join(errs...)
	}
	for _, err := range errs {
		a.Problems = append(a.Problems, err.Error())
	}
	return a, nil
}

// AppCounters reads the per-app series of app guid from Prometheus text,
// summed over its instances, keyed "<what> <direction>[ <verdict>]".
func AppCounters(text, guid string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, appSeriesPrefix) {
			continue
		}
		name, rest, ok := strings.Cut(line, "{")
		if !ok {
			continue
		}
		labelText, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		labels := parseLabels(labelText)
		if labels["app_guid"] != guid {
			continue
		}
		key := strings.TrimSuffix(strings.TrimPrefix(name, appSeriesPrefix), "_total") + " " + labels["direction"]
		if labels["verdict"] != "" {
			key += " " + labels["verdict"]
		}
		out[key] += v
	}
	return out
}

// parseLabels reads `k="v",...` (values with \", \\ and \n escapes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, `="`)
		if !ok {
			break
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				switch rest[i] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(rest[i])
				}
				continue
			}
			v.WriteByte(rest[i])
		}
		out[strings.TrimSpace(k)] = v.String()
		if i >= len(rest) {
			break
		}
		s = strings.TrimPrefix(rest[i+1:], ",")
	}
	return out
}
