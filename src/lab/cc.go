package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/testsupport/fakecc"
)

// The lab's Cloud Controller: `netman-lab cc` serves src/testsupport/fakecc
// — the v3 security group listing and the UAA token endpoint on
// CCPort (TLS), asg_latest_update on CCInternalPort (mutual TLS) — and, on
// CCAdminPort (plain HTTP, 127.0.0.1), a small write API standing in for
// `cf create-security-group` / `cf bind-security-group`:
//
//	PUT    /security_groups/<guid>   body: a fakecc.SecurityGroup as JSON
//	DELETE /security_groups/<guid>
//	GET    /requests                 how many listings CC has served
//
// policy-server-asg-syncer polls it every ASGPollIntervalSeconds and
// writes what it reads into the policy database.

// The lab's UAA client for the syncer.
const (
	ccClientID     = "network-policy"
	ccClientSecret = "lab-cc-secret"
	// ASGPollIntervalSeconds is the lab syncer's asg_poll_interval_seconds:
	// upstream's minimum.
	ASGPollIntervalSeconds = 1
)

// RunCC is `netman-lab cc`.
func RunCC(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netman-lab cc", flag.ContinueOnError)
	public := fs.String("public", "127.0.0.1:9024", "the public API and UAA (TLS)")
	internal := fs.String("internal", "127.0.0.1:9023", "asg_latest_update (mutual TLS)")
	admin := fs.String("admin", "127.0.0.1:9025", "the lab's write API (plain HTTP)")
	ca := fs.String("ca", "", "CA certificate")
	cert := fs.String("cert", "", "server certificate")
	key := fs.String("key", "", "server key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cc := fakecc.New(ccClientID, ccClientSecret)
	defer cc.Close()
	pubTLS, err := mtls.ServerConfig(*cert, *key, *ca, mtls.WithoutClientAuth())
	if err != nil {
		return err
	}
	intTLS, err := mtls.ServerConfig(*cert, *key, *ca)
	if err != nil {
		return err
	}
	if _, err := cc.Start(*public, pubTLS); err != nil {
		return err
	}
	if _, err := cc.Start(*internal, intTLS); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *admin)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: ccAdmin(cc), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	fmt.Fprintf(out, "%s cloud controller on https://%s (internal https://%s, lab writes http://%s)\n", time.Now().Format(time.RFC3339Nano), *public, *internal, *admin)
	<-ctx.Done()
	return nil
}

func ccAdmin(cc *fakecc.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /security_groups/{guid}", func(w http.ResponseWriter, r *http.Request) {
		var g fakecc.SecurityGroup
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&g); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.GUID = r.PathValue("guid")
		cc.Put(g)
	})
	mux.HandleFunc("DELETE /security_groups/{guid}", func(w http.ResponseWriter, r *http.Request) {
		if !cc.Delete(r.PathValue("guid")) {
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, cc.Requests(fakecc.List))
	})
	return mux
}

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
		"--ca", p.Certs.CA, "--cert", serverCert, "--key", serverKey)
	if err != nil {
		return err
	}
	if err := WaitHTTP(proc, "http://"+p.CCAdminAddr()+"/requests", 30*time.Second); err != nil {
		return err
	}
	cfg := p.ASGSyncer(filepath.Join(certs, "vxlan-policy-agent", "client.crt"), filepath.Join(certs, "vxlan-policy-agent", "client.key"))
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
		code, body, err := httpGet("http://" + p.CCAdminAddr() + "/requests")
		if err == nil && (code != 200 || strings.TrimSpace(body) == "0") {
			err = errors.New("the syncer has not read Cloud Controller yet")
		}
		return err
	})
}

func httpGet(url string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// CCPublicAddr, CCInternalAddr and CCAdminAddr are the lab's Cloud
// Controller addresses (127.0.0.1).
func (p *Plan) CCPublicAddr() string   { return "127.0.0.1:" + strconv.Itoa(p.Ports.CC) }
func (p *Plan) CCInternalAddr() string { return "127.0.0.1:" + strconv.Itoa(p.Ports.CCInternal) }
func (p *Plan) CCAdminAddr() string    { return "127.0.0.1:" + strconv.Itoa(p.Ports.CCAdmin) }

// ASGSyncer is policy-server-asg-syncer's config for the lab: its Cloud
// Controller, UAA on the same server, the policy database and its lock
// (no locket).
func (p *Plan) ASGSyncer(clientCert, clientKey string) map[string]any {
	return map[string]any{
		"uuid": "lab-asg-syncer", "asg_poll_interval_seconds": ASGPollIntervalSeconds, "retry_deadline_seconds": 300,
		"database": p.PolicyDB, "uaa_client": ccClientID, "uaa_client_secret": ccClientSecret,
		"uaa_url": "https://127.0.0.1", "uaa_port": p.Ports.CC, "uaa_ca": p.Certs.CA,
		"cc_url": "https://" + p.CCPublicAddr(), "cc_ca_cert": p.Certs.CA,
		"cc_internal_url": "https://" + p.CCInternalAddr(), "cc_internal_ca_cert": p.Certs.CA,
		"cc_internal_client_cert": clientCert, "cc_internal_client_key": clientKey,
		"log_prefix": "cfnetworking", "log_level": "debug", "metron_address": "127.0.0.1:3457", "request_timeout": 5,
	}
}

// ccASGs makes the demo's changes through the lab's Cloud Controller.
type ccASGs struct{ admin string }

func (c ccASGs) do(method, path string, body any) (time.Time, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return time.Time{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+c.admin+path, rd)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	at := time.Now()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return at, fmt.Errorf("cloud controller %s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return at, nil
}

const labASGGUID = "lab-outside-service"

func (c ccASGs) Bind(_ context.Context, space, service string) (time.Time, error) {
	ip, port, _ := strings.Cut(service, ":")
	return c.do(http.MethodPut, "/security_groups/"+labASGGUID, fakecc.SecurityGroup{
		Name: "outside-service", RunningSpaces: []string{space},
		Rules: []fakecc.Rule{{Protocol: "tcp", Destination: ip, Ports: port, Description: "the lab's outside service"}},
	})
}

func (c ccASGs) Unbind(context.Context) (time.Time, error) {
	return c.do(http.MethodDelete, "/security_groups/"+labASGGUID, nil)
}

func (c ccASGs) Action(bind bool, space, service string) string {
	if bind {
		return fmt.Sprintf("Cloud Controller: create outside-service (tcp %s), bind to running space %s", service, shortGUID(space))
	}
	return "Cloud Controller: delete outside-service"
}

func (c ccASGs) Since() string { return "Cloud Controller's answer" }

func (c ccASGs) Close() error { return nil }
