package mtls

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	keysOnce sync.Once
	keys     [2]*rsa.PrivateKey
	keysErr  error
	keyNext  atomic.Uint32
)

// fastKeys hands out two cached RSA keys in turn: a tree needs seven leaves, and fresh 2048-bit keys
// would make these tests take seconds. Sharing a key between test certificates is harmless.
func fastKeys(t *testing.T) func() (*rsa.PrivateKey, error) {
	t.Helper()
	keysOnce.Do(func() {
		for i := range keys {
			if keys[i], keysErr = rsa.GenerateKey(rand.Reader, rsaBits); keysErr != nil {
				return
			}
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return func() (*rsa.PrivateKey, error) { return keys[keyNext.Add(1)%2], nil }
}

func allNames() []string {
	var names []string
	for _, c := range Components() {
		names = append(names, c.Name)
	}
	return names
}

// snapshot maps every file under dir to its content, to tell what a run changed. Leaf keys are left out:
// fastKeys reuses keys, so a reissued key may be byte-identical; the certificate (random serial) always
// changes with it.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if rel, _ := filepath.Rel(dir, path); rel != "ca.key" && strings.HasSuffix(rel, ".key") {
			return nil
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func changed(before, after map[string]string) []string {
	var out []string
	for k, v := range after {
		if before[k] != v {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func TestWriteTreeLayout(t *testing.T) {
	dir := t.TempDir()
	res, err := writeTree(dir, TreeOptions{ExtraHosts: []string{"10.0.16.5", " api.sys.example.com ", "localhost"}}, fastKeys(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(TreeResult{CACreated: true, Issued: allNames()}, res, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}

	type leaf struct {
		File  string
		CN    string
		SANs  []string
		Usage []x509.ExtKeyUsage
	}
	server := func(comp, cn string) leaf {
		return leaf{comp + "/server.crt", cn, []string{cn, "localhost", "api.sys.example.com", "127.0.0.1", "10.0.16.5"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	}
	client := func(comp, cn string, sans ...string) leaf {
		return leaf{comp + "/client.crt", cn, sans, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	}
	want := []leaf{
		server("silk-controller", "silk-controller.service.cf.internal"),
		client("silk-daemon", "silk-daemon"),
		server("policy-server-internal", "policy-server.service.cf.internal"),
		client("vxlan-policy-agent", "clientName"),
		server("policy-server", "policy-server.service.cf.internal"),
		server("service-discovery-controller", "service-discovery-controller.service.cf.internal"),
		client("bosh-dns-adapter", "service-discovery-controller.service.cf.internal", "service-discovery-controller.service.cf.internal"),
	}
	var got []leaf
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		comp := filepath.Dir(w.File)
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, w.File), filepath.Join(dir, strings.TrimSuffix(w.File, ".crt")+".key"))
		if err != nil {
			t.Fatal(err)
		}
		sans := slices.Clone(pair.Leaf.DNSNames)
		for _, ip := range pair.Leaf.IPAddresses {
			sans = append(sans, ip.String())
		}
		got = append(got, leaf{w.File, pair.Leaf.Subject.CommonName, sans, pair.Leaf.ExtKeyUsage})
		compCA, err := os.ReadFile(filepath.Join(dir, comp, "ca.crt"))
		if err != nil || string(compCA) != string(caPEM) {
			t.Errorf("%s/ca.crt is not the tree's CA (err %v)", comp, err)
		}
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("certificates (-want +got):\n%s", diff)
	}

	for _, rel := range []string{"ca.key", "silk-controller/server.key", "silk-daemon/client.key"} {
		st, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", rel, st.Mode().Perm())
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*", ".*tmp*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestWriteTreeHandshakes(t *testing.T) {
	dir := t.TempDir()
	if _, err := writeTree(dir, TreeOptions{}, fastKeys(t), time.Now()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		client, server, serverName string
		opts                       []Option
	}{
		{"silk-daemon", "silk-controller", SilkControllerHost, nil},
		{"vxlan-policy-agent", "policy-server-internal", PolicyServerHost, nil},
		{"bosh-dns-adapter", "service-discovery-controller", ServiceDiscoveryControllerHost, []Option{InternalServiceDefaults()}},
	}
	for _, tt := range tests {
		t.Run(tt.client+" to "+tt.server, func(t *testing.T) {
			s := filepath.Join(dir, tt.server)
			c := filepath.Join(dir, tt.client)
			serverCfg, err := ServerConfig(filepath.Join(s, "server.crt"), filepath.Join(s, "server.key"), filepath.Join(s, "ca.crt"), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
				clientCfg, err := ClientConfig(filepath.Join(c, "client.crt"), filepath.Join(c, "client.key"), filepath.Join(c, "ca.crt"), WithServerName(tt.serverName))
				if err != nil {
					t.Fatal(err)
				}
				clientCfg.MaxVersion = version
				if err := handshake(serverCfg, clientCfg); err != nil {
					t.Errorf("%s: %v", tls.VersionName(version), err)
				}
			}
		})
	}
}

// handshake runs both ends of a handshake over loopback TCP (net.Pipe is unbuffered, and both TLS 1.3
// ends may write at once).
func handshake(serverCfg, clientCfg *tls.Config) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		srv := tls.Server(conn, serverCfg)
		err = srv.Handshake()
		if err == nil {
			_, err = srv.Write([]byte{1}) // lets a TLS 1.3 client learn the verdict on its certificate
		}
		errc <- err
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	cli := tls.Client(conn, clientCfg)
	cliErr := cli.Handshake()
	if cliErr == nil {
		_, cliErr = cli.Read(make([]byte, 1))
	}
	if err := <-errc; err != nil {
		return err
	}
	return cliErr
}

func TestWriteTreeIdempotent(t *testing.T) {
	keys := fastKeys(t)
	servers := []string{"silk-controller", "policy-server-internal", "policy-server", "service-discovery-controller"}
	clients := []string{"silk-daemon", "vxlan-policy-agent", "bosh-dns-adapter"}
	now := time.Now()

	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir string)
		opts    TreeOptions
		at      time.Time
		want    TreeResult
		changed func(before map[string]string) []string // nil: nothing changes
	}{
		{
			name: "rerun keeps everything",
			want: TreeResult{Kept: allNames()},
		},
		{
			name: "new extra host reissues the servers only",
			opts: TreeOptions{ExtraHosts: []string{"192.0.2.7"}},
			want: TreeResult{Issued: servers, Kept: clients},
			changed: func(map[string]string) []string {
				var out []string
				for _, s := range servers {
					out = append(out, s+"/server.crt")
				}
				return out
			},
		},
		{
			name: "force replaces the CA and every certificate",
			opts: TreeOptions{Force: true},
			want: TreeResult{CACreated: true, Issued: allNames()},
			changed: func(before map[string]string) []string {
				return mapsKeys(before)
			},
		},
		{
			name:   "missing key file",
			tamper: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "silk-daemon", "client.key")) },
			want:   TreeResult{Issued: []string{"silk-daemon"}, Kept: without(allNames(), "silk-daemon")},
			changed: func(map[string]string) []string {
				return []string{"silk-daemon/client.crt"}
			},
		},
		{
			name: "key of another component",
			tamper: func(t *testing.T, dir string) {
				copyFile(t, filepath.Join(dir, "silk-daemon", "client.key"), filepath.Join(dir, "silk-controller", "server.key"))
			},
			want: TreeResult{Issued: []string{"silk-controller"}, Kept: without(allNames(), "silk-controller")},
			changed: func(map[string]string) []string {
				return []string{"silk-controller/server.crt"}
			},
		},
		{
			name: "certificate for another role",
			tamper: func(t *testing.T, dir string) {
				copyFile(t, filepath.Join(dir, "silk-daemon", "client.crt"), filepath.Join(dir, "vxlan-policy-agent", "client.crt"))
				copyFile(t, filepath.Join(dir, "silk-daemon", "client.key"), filepath.Join(dir, "vxlan-policy-agent", "client.key"))
			},
			want: TreeResult{Issued: []string{"vxlan-policy-agent"}, Kept: without(allNames(), "vxlan-policy-agent")},
			changed: func(map[string]string) []string {
				return []string{"vxlan-policy-agent/client.crt"}
			},
		},
		{
			name: "stale component CA copy is rewritten",
			tamper: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "bosh-dns-adapter", "ca.crt"), []byte("old"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: TreeResult{Kept: allNames()},
		},
		{
			name: "certificates close to expiry are reissued",
			at:   now.Add(leafValidity - renewBefore/2),
			want: TreeResult{Issued: allNames()},
			changed: func(before map[string]string) []string {
				return without(mapsKeys(before), "ca.crt", "ca.key", "*/ca.crt")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := writeTree(dir, TreeOptions{}, keys, now); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			if tt.tamper != nil {
				tt.tamper(t, dir)
			}
			at := tt.at
			if at.IsZero() {
				at = now
			}
			res, err := writeTree(dir, tt.opts, keys, at)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, res, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			var want []string
			if tt.changed != nil {
				want = tt.changed(before)
				slices.Sort(want)
			}
			if diff := cmp.Diff(want, changed(before, snapshot(t, dir)), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("changed files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteTreeErrors(t *testing.T) {
	keys := fastKeys(t)
	now := time.Now()
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		opts   TreeOptions
		at     time.Time
		want   string
	}{
		{
			name:   "CA key missing",
			tamper: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "ca.key")) },
			want:   "found only one of",
		},
		{
			name: "CA key corrupt",
			tamper: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("junk"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: "ca.key: no private key found in CA key file (no PEM data) (replace it with -force)",
		},
		{
			name: "CA about to expire",
			at:   now.Add(caValidity - renewBefore/2),
			want: "expires",
		},
		{
			name: "bad extra host",
			opts: TreeOptions{ExtraHosts: []string{"http://x"}},
			want: `extra host: host "http://x" is neither an IP address nor a DNS name`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := writeTree(dir, TreeOptions{}, keys, now); err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				tt.tamper(t, dir)
			}
			before := snapshot(t, dir)
			at := tt.at
			if at.IsZero() {
				at = now
			}
			_, err := writeTree(dir, tt.opts, keys, at)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
				t.Errorf("a failed run changed files (-before +after):\n%s", diff)
			}
			// Force always recovers.
			if _, err := writeTree(dir, TreeOptions{Force: true}, keys, at); err != nil {
				t.Errorf("forced run: %v", err)
			}
		})
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mapsKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// without drops names matching any of the filepath.Match patterns.
func without(names []string, patterns ...string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, n); ok {
				return true
			}
		}
		return false
	})
}
