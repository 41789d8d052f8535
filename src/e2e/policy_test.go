package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/celltest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

func app(guid, space string) celltest.ContainerOptions {
	return celltest.ContainerOptions{Metadata: map[string]any{
		"policy_group_id": guid, "app_id": guid, "space_id": space, "org_id": "org-1", "container_workload": "app",
	}}
}

// denied checks that a new connection is refused (overlay REJECT).
func denied(t *testing.T, from *celltest.Container, proto, addr string) {
	t.Helper()
	if err := celltest.Echo(from.NS, proto, addr, "should not pass"); err == nil {
		t.Fatalf("%s %s from %s got through", proto, addr, from.IP)
	}
}

// TestPolicyEnforcement is issue 5's scenario: the real policy servers,
// two cells each running silk-daemon and vxlan-policy-agent, containers
// made through the CNI chain, policies created and deleted through the
// external API.
// It runs on both enforcement backends, at once: the scenario mostly
// waits, and the two labs share nothing but the machine.
func TestPolicyEnforcement(t *testing.T) {
	onEachBackend(t, true, testPolicyEnforcement)
}

func testPolicyEnforcement(t *testing.T, backend string) {
	lab := celltest.New(t, celltest.Options{Cells: 2, Policy: true, Backend: backend})
	c1, c2 := lab.Cells[0], lab.Cells[1]
	a := c1.AddContainer(t, app("app-a", "space-1"))
	b := c2.AddContainer(t, app("app-b", "space-1"))
	c := c1.AddContainer(t, app("app-c", "space-2"))
	celltest.Listen(t, b.NS, "tcp", b.IP+":8080")
	celltest.Listen(t, b.NS, "udp", b.IP+":5353")
	celltest.Listen(t, b.NS, "tcp", b.IP+":9003")
	celltest.Listen(t, a.NS, "tcp", a.IP+":8080")
	celltest.Listen(t, c.NS, "tcp", c.IP+":7000")

	tcp8080 := policy.NewPolicy("app-a", "app-b", "tcp", 8080, 8080)
	t.Run("no policy, no traffic", func(t *testing.T) {
		denied(t, a, "tcp", b.IP+":8080")
		denied(t, c, "tcp", b.IP+":8080")
	})

	t.Run("a policy opens exactly what it says", func(t *testing.T) {
		lab.CreatePolicies(t, tcp8080)
		eventually(t, 5*time.Second, func() error { return celltest.Echo(a.NS, "tcp", b.IP+":8080", "a to b") })
		denied(t, b, "tcp", a.IP+":8080") // not the reverse direction
		denied(t, c, "tcp", b.IP+":8080") // not another app
		denied(t, a, "tcp", b.IP+":9003") // not another port
	})

	t.Run("udp and port ranges", func(t *testing.T) {
		lab.CreatePolicies(t, policy.NewPolicy("app-a", "app-b", "udp", 5353, 5353), policy.NewPolicy("app-c", "app-b", "tcp", 9000, 9010))
		eventually(t, 5*time.Second, func() error { return celltest.Echo(a.NS, "udp", b.IP+":5353", "udp a to b") })
		eventually(t, 5*time.Second, func() error { return celltest.Echo(c.NS, "tcp", b.IP+":9003", "range c to b") })
		denied(t, c, "tcp", b.IP+":8080")
	})

	t.Run("same-cell policy", func(t *testing.T) {
		denied(t, a, "tcp", c.IP+":7000")
		lab.CreatePolicies(t, policy.NewPolicy("app-a", "app-c", "tcp", 7000, 7000))
		eventually(t, 5*time.Second, func() error { return celltest.Echo(a.NS, "tcp", c.IP+":7000", "a to c") })
	})

	t.Run("killing and restarting the agent changes nothing", func(t *testing.T) {
		before1, before2 := c1.EnforcedRules(t), c2.EnforcedRules(t)
		conn, err := celltest.Dial(a.NS, "tcp", b.IP+":8080")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c1.KillAgent()
		c2.KillAgent()
		if err := celltest.EchoOn(conn, "agents down"); err != nil {
			t.Fatalf("established connection broke with the agents down: %v", err)
		}
		c1.StartAgent(nil)
		c2.StartAgent(nil)
		time.Sleep(2 * time.Second) // a few cycles
		if err := celltest.EchoOn(conn, "agents back"); err != nil {
			t.Fatalf("established connection broke across an agent restart: %v", err)
		}
		if err := celltest.Echo(a.NS, "tcp", b.IP+":8080", "new conn"); err != nil {
			t.Fatalf("policy stopped working after an agent restart: %v", err)
		}
		denied(t, b, "tcp", a.IP+":8080")
		if after := c1.EnforcedRules(t); after != before1 {
			t.Errorf("cell 1 rules changed across an agent restart:\nbefore:\n%s\nafter:\n%s", before1, after)
		}
		if after := c2.EnforcedRules(t); after != before2 {
			t.Errorf("cell 2 rules changed across an agent restart:\nbefore:\n%s\nafter:\n%s", before2, after)
		}
	})

	t.Run("stopping the policy server leaves enforcement as it was", func(t *testing.T) {
		lab.StopInternal()
		time.Sleep(3 * time.Second) // long-polls fail, plain polls fail, cycles fail
		if err := celltest.Echo(a.NS, "tcp", b.IP+":8080", "server down"); err != nil {
			t.Fatalf("allowed traffic stopped with the policy server down: %v", err)
		}
		denied(t, c, "tcp", b.IP+":8080")
		// Containers still start: the force poll fails, but the CNI ADD
		// must not take the cell's rules down with it.
		lab.StartInternal()
		eventually(t, 10*time.Second, func() error { return celltest.Echo(a.NS, "tcp", b.IP+":8080", "server back") })
	})

	t.Run("deleting the policy denies new connections", func(t *testing.T) {
		lab.DeletePolicies(t, tcp8080)
		eventually(t, 5*time.Second, func() error {
			if err := celltest.Echo(a.NS, "tcp", b.IP+":8080", "after delete"); err == nil {
				return fmt.Errorf("still allowed")
			}
			return nil
		})
		// The other policies stay.
		if err := celltest.Echo(a.NS, "udp", b.IP+":5353", "udp stays"); err != nil {
			t.Fatalf("unrelated policy lost: %v", err)
		}
	})

	t.Run("agent metrics and debug endpoints", func(t *testing.T) {
		// The restarted agent's only write was the delete just above; the
		// kernel sees it a moment before the agent records the metric.
		eventually(t, 5*time.Second, func() error {
			code, body, err := c2.Get("http://127.0.0.1:8721/metrics")
			if err != nil || code != 200 || !strings.Contains(body, "iptablesEnforceTime") {
				return fmt.Errorf("metrics: %d %v\n%s", code, err, body)
			}
			return nil
		})
		code, body, err := c2.Get("http://127.0.0.1:8721/iptables-c2c-logging")
		if err != nil || code != 200 || strings.TrimSpace(body) != `{"enabled":false}` {
			t.Errorf("c2c logging state: %d %q %v", code, body, err)
		}
	})

	t.Run("the agent logs upstream's lifecycle lines", func(t *testing.T) {
		// parsed-config first, starting once every member runs, as
		// upstream; never the group's own member lines at info.
		msgs := logtest.MessagesIn(logtest.ParseJSON(t, c2.AgentLog()))
		parsed, starting := slices.Index(msgs, "cfnetworking.vxlan-policy-agent.parsed-config"), slices.Index(msgs, "cfnetworking.vxlan-policy-agent.starting")
		if parsed != 0 || starting < 0 {
			t.Errorf("parsed-config at %d, starting at %d, want 0 and later:\n%s", parsed, starting, strings.Join(msgs, "\n"))
		}
	})
}

// TestIptablesLoggerReportsC2CTraffic: with c2c and ASG logging on, a
// denied and an accepted connection between two apps, and a denied and an
// accepted connection from an app to an outside host, become
// iptables-logger's JSON lines (from the kernel's DENY_C2C_, OK_ and
// DENY_ lines) on the cell that logged them. On both backends, one after
// the other: the loggers read every namespace's kernel log, and two labs'
// overlays hold the same addresses.
func TestIptablesLoggerReportsC2CTraffic(t *testing.T) {
	celltest.LogAllNetns(t)
	onEachBackend(t, false, testLoggerReportsTraffic)
}

// logEvent is one of iptables-logger's output lines: the container is
// "destination" for ingress, "source" for egress.
type logEvent struct {
	Source  string `json:"source"`
	Message string `json:"message"`
	Data    struct {
		Packet struct {
			Direction string `json:"direction"`
			Allowed   bool   `json:"allowed"`
			SrcIP     string `json:"src_ip"`
			DstIP     string `json:"dst_ip"`
			DstPort   int    `json:"dst_port"`
			Protocol  string `json:"protocol"`
		} `json:"packet"`
		Destination logContainer `json:"destination"`
		SourceApp   logContainer `json:"source"`
	} `json:"data"`
}

type logContainer struct {
	ContainerID string `json:"container_id"`
	AppGUID     string `json:"app_guid"`
	SpaceGUID   string `json:"space_guid"`
	OrgGUID     string `json:"organization_guid"`
	HostIP      string `json:"host_ip"`
}

// findLogEvent is the first line of the logger's output file with message
// for a packet from src to dst.
func findLogEvent(out, message, src, dst string) (logEvent, error) {
	data, err := os.ReadFile(out)
	if err != nil {
		return logEvent{}, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		var e logEvent
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == message && e.Data.Packet.SrcIP == src && e.Data.Packet.DstIP == dst {
			return e, nil
		}
	}
	return logEvent{}, fmt.Errorf("no %s line for %s → %s in:\n%s", message, src, dst, data)
}

func testLoggerReportsTraffic(t *testing.T, backend string) {
	lab := celltest.New(t, celltest.Options{Cells: 2, Policy: true, C2CLogging: true, ASGLogging: true, Backend: backend})
	c1, c2 := lab.Cells[0], lab.Cells[1]
	out1, out2 := c1.StartLogger(), c2.StartLogger()
	a := c1.AddContainer(t, app("log-app-a", "space-1"))
	b := c2.AddContainer(t, app("log-app-b", "space-1"))
	celltest.Listen(t, b.NS, "tcp", b.IP+":8080")
	ext, extIP := lab.NewHost(200)
	celltest.Listen(t, ext, "tcp", extIP+":8443")
	target := extIP + ":8443"

	// Egress first, the c2c policy after: the policy's tag makes a's
	// packets marked, which must not change its egress verdicts.
	if connects(a, target) {
		t.Fatal("egress allowed with no security group")
	}
	replaceGroups(t, lab.PolicyStore(t), egressGroup("sg-log", extIP, 8443, "space-1"))
	waitConnects(t, a, target, true, 10*time.Second)

	denied(t, a, "tcp", b.IP+":8080")
	lab.CreatePolicies(t, policy.NewPolicy("log-app-a", "log-app-b", "tcp", 8080, 8080))
	eventually(t, 5*time.Second, func() error { return celltest.Echo(a.NS, "tcp", b.IP+":8080", "logged") })

	for _, want := range []struct {
		out, msg, dst, direction string
		port                     int
		ctr                      *celltest.Container
	}{
		{out2, "cfnetworking.iptables.ingress-denied", b.IP, "ingress", 8080, b},
		{out2, "cfnetworking.iptables.ingress-allowed", b.IP, "ingress", 8080, b},
		{out1, "cfnetworking.iptables.egress-denied", extIP, "egress", 8443, a},
		{out1, "cfnetworking.iptables.egress-allowed", extIP, "egress", 8443, a},
	} {
		var e logEvent
		eventually(t, 5*time.Second, func() (err error) { e, err = findLogEvent(want.out, want.msg, a.IP, want.dst); return err })
		d, appGUID := e.Data.Destination, "log-app-b"
		if want.direction == "egress" {
			d, appGUID = e.Data.SourceApp, "log-app-a"
		}
		if e.Source != "cfnetworking.iptables" || e.Data.Packet.Direction != want.direction || e.Data.Packet.DstPort != want.port ||
			e.Data.Packet.Protocol != "TCP" || d.ContainerID != want.ctr.ID || d.AppGUID != appGUID || d.SpaceGUID != "space-1" ||
			d.OrgGUID != "org-1" || d.HostIP != want.ctr.Cell.UnderlayIP {
			t.Errorf("%s: %+v", want.msg, e)
		}
	}
}
