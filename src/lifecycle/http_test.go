package lifecycle_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/testsupport/eventually"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// okHandler answers every request with 200 and an empty body.
var okHandler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHTTPServerServesAndStops(t *testing.T) {
	logger, sink := newTestLogger()
	l := listen(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	p := startProcess(t, lifecycle.HTTPServerOnListener(logger, l, h, nil))

	code, body := get(t, http.DefaultClient, "http://"+l.Addr().String()+"/x")
	if code != http.StatusOK || body != "hello" {
		t.Errorf("GET = %d %q", code, body)
	}
	if logs := sink.find("test.listening"); len(logs) != 1 || logs[0].Data["address"] != l.Addr().String() {
		t.Errorf("listening logs = %+v", logs)
	}
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Error("listener still accepting after stop")
	}
}

func TestHTTPServerBindsItsAddress(t *testing.T) {
	logger, sink := newTestLogger()
	p := startProcess(t, lifecycle.HTTPServer(logger, "127.0.0.1:0", okHandler, nil))
	logs := sink.find("test.listening")
	if len(logs) != 1 {
		t.Fatalf("listening logs = %+v", logs)
	}
	addr := logs[0].Data["address"].(string)
	if code, _ := get(t, http.DefaultClient, "http://"+addr+"/health"); code != http.StatusOK {
		t.Errorf("GET /health = %d", code)
	}
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v", err)
	}
}

func TestHTTPServerDrainsInFlightRequests(t *testing.T) {
	logger, _ := newTestLogger()
	l := listen(t)
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})
	p := startProcess(t, lifecycle.HTTPServerOnListener(logger, l, h, nil))

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + l.Addr().String())
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), err}
	}()
	<-entered
	p.Signal(os.Interrupt)
	select {
	case err := <-p.Wait():
		t.Fatalf("server exited with a request in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	r := <-res
	if r.err != nil || r.code != http.StatusOK || r.body != "done" {
		t.Errorf("in-flight request = %+v, want 200 done", r)
	}
	if err := waitExit(t, p); err != nil {
		t.Errorf("exit = %v", err)
	}
}

func TestHTTPServerShutdownTimeout(t *testing.T) {
	logger, sink := newTestLogger()
	l := listen(t)
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // only a forced Close ends this request
	})
	p := startProcess(t, lifecycle.HTTPServerOnListenerWithTimeout(logger, l, h, nil, 100*time.Millisecond))
	go func() {
		if resp, err := http.Get("http://" + l.Addr().String()); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	start := time.Now()
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v, want nil", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stop took %s despite a 100ms shutdown timeout", d)
	}
	if len(sink.find("test.graceful-shutdown-timed-out")) != 1 {
		t.Error("timed-out shutdown not logged")
	}
}

func TestHTTPServerTLS(t *testing.T) {
	cert, pool := selfSignedCert(t)
	logger, sink := newTestLogger()
	l := listen(t)
	p := startProcess(t, lifecycle.HTTPServerOnListener(logger, l, okHandler,
		&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	defer stopProcess(t, p)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, _ := get(t, client, "https://"+l.Addr().String()+"/"); code != http.StatusOK {
		t.Errorf("GET over TLS = %d", code)
	}

	// A plaintext client fails the handshake; net/http's complaint lands in
	// the structured log rather than on stderr.
	if resp, err := http.Get("http://" + l.Addr().String()); err == nil {
		resp.Body.Close()
	}
	eventually.True(t, "handshake error log", 5*time.Second, func() bool {
		for _, l := range sink.find("test.http-server") {
			if strings.Contains(l.Data["message"].(string), "TLS handshake error") {
				return true
			}
		}
		return false
	})
}

func TestHTTPServerTLSWithoutCertificate(t *testing.T) {
	logger, _ := newTestLogger()
	p := ifrit.Background(lifecycle.HTTPServer(logger, "127.0.0.1:0", okHandler, &tls.Config{}))
	if err := waitExit(t, p); err == nil || !strings.Contains(err.Error(), "no server certificate") {
		t.Errorf("exit = %v, want a missing certificate error", err)
	}
}

func TestServerTimeouts(t *testing.T) {
	logger, _ := newTestLogger()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	srv := lifecycle.NewServer(logger, okHandler, cfg)
	if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Errorf("ReadHeaderTimeout=%s IdleTimeout=%s, want both set", srv.ReadHeaderTimeout, srv.IdleTimeout)
	}
	if srv.ErrorLog == nil {
		t.Error("ErrorLog not routed to lager")
	}
	if srv.TLSConfig == cfg || srv.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Error("TLS config should be a clone of the caller's")
	}
}

func selfSignedCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
