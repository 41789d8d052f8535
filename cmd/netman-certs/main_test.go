package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/mtls"
)

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out bytes.Buffer
	if err := run([]string{"-dir", dir, "-host", "10.0.0.9", "-host", "api.sys.example.com"}, &out); err != nil {
		t.Fatal(err)
	}
	want := "created CA in " + dir + "\n" +
		"issued silk-controller\nissued silk-daemon\nissued policy-server-internal\nissued vxlan-policy-agent\n" +
		"issued policy-server\nissued service-discovery-controller\nissued bosh-dns-adapter\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("first run output (-want +got):\n%s", diff)
	}

	s := filepath.Join(dir, "policy-server")
	pair, err := tls.LoadX509KeyPair(filepath.Join(s, "server.crt"), filepath.Join(s, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{mtls.PolicyServerHost, "api.sys.example.com", "localhost", "10.0.0.9", "127.0.0.1"} {
		if err := pair.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("policy-server certificate: %v", err)
		}
	}
	c := filepath.Join(dir, "silk-daemon")
	if _, err := mtls.ClientConfig(filepath.Join(c, "client.crt"), filepath.Join(c, "client.key"), filepath.Join(c, "ca.crt")); err != nil {
		t.Errorf("silk-daemon client config: %v", err)
	}

	out.Reset()
	if err := run([]string{"-dir", dir, "-host", "10.0.0.9", "-host", "api.sys.example.com"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "reused CA in "+dir+"\nkept silk-controller\n") || strings.Contains(out.String(), "issued") {
		t.Errorf("second run output:\n%s", out.String())
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no dir", nil, "usage: netman-certs -dir"},
		{"stray argument", []string{"-dir", t.TempDir(), "extra"}, "usage: netman-certs -dir"},
		{"unknown flag", []string{"-nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.args, &bytes.Buffer{})
			var usage usageError
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run error = %v, want a usage error containing %q", err, tt.want)
			}
		})
	}
	if err := run([]string{"-h"}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestRunRefusesBrokenCA(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-dir", dir}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-force") {
		t.Errorf("run error = %v, want one pointing at -force", err)
	}
}
