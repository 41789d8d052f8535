package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/standin/cc"
)

// The lab's Cloud Controller: `netman-lab cc` (src/standin/cc) serves the
// v3 security group listing and the UAA token endpoint (TLS),
// asg_latest_update (mutual TLS) and, on 127.0.0.1, the write API the demo
// binds its security group through. policy-server-asg-syncer polls it
// every ASGPollIntervalSeconds and writes what it reads into the policy
// database.

// The lab's UAA client for the syncer.
const (
	ccClientID     = "network-policy"
	ccClientSecret = "lab-cc-secret"
	// ASGPollIntervalSeconds is the lab syncer's asg_poll_interval_seconds:
	// upstream's minimum.
	ASGPollIntervalSeconds = 1
)

// cloudController starts the lab's Cloud Controller and
// policy-server-asg-syncer, and waits for the first sync.
func (u *upper) cloudController() error {
	st, p := u.st, &u.st.Plan
	certs := filepath.Join(st.Dir, "certs")
	// Stand-ins from the netman-certs tree: policy-server's server pair
	// (127.0.0.1 is on it) for Cloud Controller, the agent's client pair
	// for the syncer's mutual TLS to asg_latest_update.
	serverCert, serverKey := filepath.Join(certs, "policy-server", "server.crt"), filepath.Join(certs, "policy-server", "server.key")
	u.say("starting a fake Cloud Controller (log %s)", filepath.Join(st.Dir, "cloud-controller.log"))
	proc, err := u.spawnAs("cloud controller", nil, filepath.Join(st.Dir, "cloud-controller.log"), "netman-lab", "cc",
		"--public", p.CCPublicAddr(), "--internal", p.CCInternalAddr(), "--admin", p.CCAdminAddr(),
		"--ca", p.Certs.CA, "--cert", serverCert, "--key", serverKey, "--client", ccClientID, "--secret", ccClientSecret)
	if err != nil {
		return err
	}
	admin := cc.Admin{Addr: p.CCAdminAddr()}
	if err := WaitFor(proc, 30*time.Second, func() error { _, err := admin.Requests(); return err }); err != nil {
		return err
	}
	cfg := p.ASGSyncer(CloudController{
		Public: p.CCPublicAddr(), Internal: p.CCInternalAddr(), Client: ccClientID, Secret: ccClientSecret,
		ClientCert: filepath.Join(certs, "vxlan-policy-agent", "client.crt"), ClientKey: filepath.Join(certs, "vxlan-policy-agent", "client.key"),
		PollSeconds: ASGPollIntervalSeconds,
	})
	path, err := WriteJSON(st.Dir, "policy-server-asg-syncer.json", cfg)
	if err != nil {
		return err
	}
	u.say("starting policy-server-asg-syncer, polling every %d s (log %s)", ASGPollIntervalSeconds, filepath.Join(st.Dir, "policy-server-asg-syncer.log"))
	syncer, err := u.spawn(nil, filepath.Join(st.Dir, "policy-server-asg-syncer.log"), "policy-server-asg-syncer", "-config-file", path)
	if err != nil {
		return err
	}
	return WaitFor(syncer, 30*time.Second, func() error {
		n, err := admin.Requests()
		if err == nil && n == 0 {
			err = errors.New("the syncer has not read Cloud Controller yet")
		}
		return err
	})
}

// CCPublicAddr, CCInternalAddr and CCAdminAddr are the lab's Cloud
// Controller addresses (127.0.0.1).
func (p *Plan) CCPublicAddr() string   { return "127.0.0.1:" + strconv.Itoa(p.Ports.CC) }
func (p *Plan) CCInternalAddr() string { return "127.0.0.1:" + strconv.Itoa(p.Ports.CCInternal) }
func (p *Plan) CCAdminAddr() string    { return "127.0.0.1:" + strconv.Itoa(p.Ports.CCAdmin) }

// CloudController is where policy-server-asg-syncer finds Cloud
// Controller, and UAA on the same server (as the lab's).
type CloudController struct {
	Public, Internal      string // host:port of the public API (TLS) and of asg_latest_update (mutual TLS)
	Client, Secret        string // the UAA client
	ClientCert, ClientKey string // the syncer's pair for Internal
	PollSeconds           int    // asg_poll_interval_seconds
}

// ASGSyncer is policy-server-asg-syncer's config: cc, the policy database
// and its lock (no locket).
func (p *Plan) ASGSyncer(cc CloudController) asgsyncer.Config {
	host, port, _ := net.SplitHostPort(cc.Public)
	uaaPort, _ := strconv.Atoi(port)
	return asgsyncer.Config{
		UUID: "lab-asg-syncer", ASGPollIntervalSeconds: cc.PollSeconds, RetryDeadlineSeconds: 300,
		Database: p.PolicyDB,
		ClientConfig: auth.ClientConfig{
			UAAClient: cc.Client, UAAClientSecret: cc.Secret,
			UAAURL: "https://" + host, UAAPort: uaaPort, UAACA: p.Certs.CA,
			CCURL: "https://" + cc.Public, CCCA: p.Certs.CA, RequestTimeout: 5,
		},
		CCInternalURL: "https://" + cc.Internal, CCInternalCA: p.Certs.CA,
		CCInternalClientCert: cc.ClientCert, CCInternalClientKey: cc.ClientKey,
		LogPrefix: logPrefix, LogLevel: logLevel, MetronAddress: metronAddress,
	}
}

// ccASGs makes the demo's changes through the lab's Cloud Controller.
type ccASGs struct{ admin cc.Admin }

const labASGGUID = "lab-outside-service"

func (c ccASGs) Bind(_ context.Context, space, service string) (time.Time, error) {
	ip, port, err := net.SplitHostPort(service)
	if err != nil {
		return time.Time{}, err
	}
	return c.admin.Put(cc.SecurityGroup{
		GUID: labASGGUID, Name: "outside-service", RunningSpaces: []string{space},
		Rules: []cc.Rule{{Protocol: "tcp", Destination: ip, Ports: port, Description: "the lab's outside service"}},
	})
}

func (c ccASGs) Unbind(context.Context) (time.Time, error) {
	return c.admin.Delete(labASGGUID)
}
func (c ccASGs) Action(bind bool, space, service string) string {
	if bind {
		return fmt.Sprintf("Cloud Controller: create outside-service (tcp %s), bind to running space %s", service, shortGUID(space))
	}
	return "Cloud Controller: delete outside-service"
}

func (c ccASGs) Since() string { return "Cloud Controller's answer" }

func (c ccASGs) Close() error { return nil }
