package cc

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/netman-release/netman/src/mtls"
)

// Run is `netman-lab cc`: the Cloud Controller — the v3 security group
// listing and the UAA token endpoint on --public (TLS), asg_latest_update
// on --internal (mutual TLS) — and, on --admin (plain HTTP), AdminHandler,
// a small write API standing in for `cf create-security-group` and
// `cf bind-security-group`, until ctx is done.
func Run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netman-lab cc", flag.ContinueOnError)
	public := fs.String("public", "127.0.0.1:9024", "the public API and UAA (TLS)")
	internal := fs.String("internal", "127.0.0.1:9023", "asg_latest_update (mutual TLS)")
	admin := fs.String("admin", "127.0.0.1:9025", "the write API (plain HTTP)")
	ca := fs.String("ca", "", "CA certificate")
	cert := fs.String("cert", "", "server certificate")
	key := fs.String("key", "", "server key")
	client := fs.String("client", "", "the UAA client granted a token")
	secret := fs.String("secret", "", "its secret")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *client == "" || *secret == "" {
		return errors.New("--client and --secret are required")
	}
	cc := New(*client, *secret)
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
	srv := &http.Server{Handler: cc.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	fmt.Fprintf(out, "%s cloud controller on https://%s (internal https://%s, lab writes http://%s)\n", time.Now().Format(time.RFC3339Nano), *public, *internal, *admin)
	<-ctx.Done()
	return nil
}

// AdminHandler is the write API:
//
//	PUT    /security_groups/<guid>   body: a SecurityGroup as JSON
//	DELETE /security_groups/<guid>
//	GET    /requests                 how many listings the server has served
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /security_groups/{guid}", func(w http.ResponseWriter, r *http.Request) {
		var g SecurityGroup
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&g); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.GUID = r.PathValue("guid")
		s.Put(g)
	})
	mux.HandleFunc("DELETE /security_groups/{guid}", func(w http.ResponseWriter, r *http.Request) {
		if !s.Delete(r.PathValue("guid")) {
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, s.Requests(List))
	})
	return mux
}
