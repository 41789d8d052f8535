package perftestsd

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/jsonhttp"
)

// monitor reads the HTTP monitoring endpoints of every NATS server.
type monitor struct {
	hosts []string
	port  int
	api   jsonhttp.Client
}

// connKey names a client connection: the server it is on and its cid there.
type connKey struct {
	server string
	cid    uint64
}

func (k connKey) String() string { return fmt.Sprintf("%s cid %d", k.server, k.cid) }

// conn is what /connz tells of one client connection.
type conn struct {
	Cid     uint64   `json:"cid"`
	Name    string   `json:"name"`
	IP      string   `json:"ip"`
	Port    int      `json:"port"`
	OutMsgs int64    `json:"out_msgs"`
	Subs    []string `json:"subscriptions_list"`

	// subscribed: one of Subs receives the subject asked about.
	subscribed bool
}

// label is the connection's client name and address, for the report.
func (c conn) label() string {
	addr := net.JoinHostPort(c.IP, strconv.Itoa(c.Port))
	if c.Name == "" {
		return addr
	}
	return c.Name + " " + addr
}

// varz is the part of /varz the test reads.
type varz struct {
	CPU           float64 `json:"cpu"`
	Mem           int64   `json:"mem"`
	SlowConsumers int64   `json:"slow_consumers"`
}

// connzPage is the number of connections asked for per /connz request.
const connzPage = 1024

func (m *monitor) get(ctx context.Context, host, path string, q url.Values, v any) error {
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(m.port)), Path: path, RawQuery: q.Encode()}
	_, err := m.api.Do(ctx, jsonhttp.Request{Path: u.String()}, v)
	return err
}

// monitorWords name the endpoint in every failure.
var monitorWords = jsonhttp.Words{
	Send:   jsonhttp.Prefix("NATS monitoring endpoint"),
	Read:   endpointFailed,
	Decode: endpointFailed,
	Status: func(c jsonhttp.Call, se *jsonhttp.StatusError) error {
		return se.Reword("NATS monitoring endpoint %s: %s", c.URL, se.Status)
	},
}

// connections lists the client connections of every server, paging
// through /connz, and marks those with a subscription that receives subject.
func (m *monitor) connections(ctx context.Context, subject string) (map[connKey]conn, error) {
	out := map[connKey]conn{}
	for _, host := range m.hosts {
		for offset := 0; ; {
			var page struct {
				Total int    `json:"total"`
				Conns []conn `json:"connections"`
			}
			q := url.Values{"subs": {"1"}, "offset": {strconv.Itoa(offset)}, "limit": {strconv.Itoa(connzPage)}}
			if err := m.get(ctx, host, "/connz", q, &page); err != nil {
				return nil, err
			}
			for _, c := range page.Conns {
				c.subscribed = slices.ContainsFunc(c.Subs, func(s string) bool { return subjectMatches(s, subject) })
				out[connKey{host, c.Cid}] = c
			}
			offset += len(page.Conns)
			if len(page.Conns) == 0 || offset >= page.Total {
				break
			}
		}
	}
	return out, nil
}

// varz reads /varz of every server.
func (m *monitor) varz(ctx context.Context) (map[string]varz, error) {
	out := map[string]varz{}
	for _, host := range m.hosts {
		var v varz
		if err := m.get(ctx, host, "/varz", nil, &v); err != nil {
			return nil, err
		}
		out[host] = v
	}
	return out, nil
}

// slowConsumers is the sum of the servers' slow consumer counts.
func slowConsumers(v map[string]varz) int64 {
	var n int64
	for _, s := range v {
		n += s.SlowConsumers
	}
	return n
}

// subjectMatches reports whether a subscription on pattern (with NATS's
// wildcards * and >) receives messages published on subject.
func subjectMatches(pattern, subject string) bool {
	p := strings.Split(pattern, ".")
	s := strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

// newMonitor reads the servers of c.
func newMonitor(c Config) *monitor {
	return &monitor{hosts: c.Hosts(), port: c.NatsMonitoringPort, api: jsonhttp.Client{HTTP: &http.Client{Timeout: 10 * time.Second}, Words: monitorWords}}
}

func endpointFailed(c jsonhttp.Call, err error) error {
	return fmt.Errorf("NATS monitoring endpoint %s: %w", c.URL, err)
}
