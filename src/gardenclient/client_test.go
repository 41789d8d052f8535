package gardenclient_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/gardenclient"
	"github.com/netman-release/netman/src/gardenclient/gardentest"
)

func TestClientAgainstFakeGarden(t *testing.T) {
	g := gardentest.New(t)
	g.Create("a", map[string]string{"log_config": `{"guid":"a"}`, "network.app_id": "app1"})
	g.Create("b", map[string]string{"network.app_id": "app2"})
	c := gardenclient.New("unix", g.Socket, 5*time.Second)
	ctx := context.Background()

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	for _, tc := range []struct {
		filter map[string]string
		want   []string
	}{
		{nil, []string{"a", "b"}},
		{map[string]string{"network.app_id": "app2"}, []string{"b"}},
		{map[string]string{"network.app_id": "nope"}, []string{}},
	} {
		got, err := c.Containers(ctx, tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		if got == nil {
			got = []string{}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Containers(%v) (-want +got):\n%s", tc.filter, diff)
		}
	}
	props, err := c.Properties(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"log_config": `{"guid":"a"}`, "network.app_id": "app1"}, props); diff != "" {
		t.Errorf("Properties (-want +got):\n%s", diff)
	}

	_, err = c.Properties(ctx, "gone")
	var ge *gardenclient.Error
	if !errors.As(err, &ge) || ge.Type != gardenclient.TypeContainerNotFound || ge.Status != 404 || err.Error() != "unknown handle: gone" {
		t.Errorf("Properties(gone) = %#v, want ContainerNotFoundError", err)
	}
	if gardenclient.Unrecoverable(err) {
		t.Error("a missing container is not unrecoverable")
	}

	g.Fail(gardenclient.TypeUnrecoverable)
	if err := c.Ping(ctx); !gardenclient.Unrecoverable(err) {
		t.Errorf("ping while unrecoverable = %v", err)
	}
	g.Fail("")
	if err := c.Ping(ctx); err == nil || gardenclient.Unrecoverable(err) || err.Error() != "garden is down" {
		t.Errorf("ping while down = %v", err)
	}
	g.Recover()
	if err := c.Ping(ctx); err != nil {
		t.Errorf("ping after recovery: %v", err)
	}
}

func TestClientBadAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"error that is not JSON", 500, "<html>", "bad response: invalid character '<' looking for beginning of value"},
		{"success that is not JSON", 200, "garbage", "decode /containers: invalid character 'g' looking for beginning of value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "g.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close() })
			_, err = gardenclient.New("unix", sock, time.Second).Containers(context.Background(), nil)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestClientNoServer(t *testing.T) {
	c := gardenclient.New("unix", filepath.Join(t.TempDir(), "missing.sock"), time.Second)
	err := c.Ping(context.Background())
	if err == nil || gardenclient.Unrecoverable(err) {
		t.Errorf("ping without a server = %v, want a connection error", err)
	}
}
