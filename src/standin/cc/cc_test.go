package cc_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/standin/cc"
)

// TestServesLikeCloudController checks the fake as the lab uses it: two
// listeners, a token from its UAA, pages, the marker moving on v3 changes
// only, and the internal endpoint refusing clients without a certificate.
func TestServesLikeCloudController(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	srv := cc.New("client", "secret")
	t.Cleanup(func() { _ = srv.Close() })
	public, err := srv.Start("127.0.0.1:0", files.ServerConfig(t, mtls.WithoutClientAuth()))
	if err != nil {
		t.Fatal(err)
	}
	internal, err := srv.Start("127.0.0.1:0", files.ServerConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	oneWay := &http.Client{Transport: &http.Transport{TLSClientConfig: files.ClientConfig(t)}, Timeout: 5 * time.Second}
	oneWay.Transport.(*http.Transport).TLSClientConfig.Certificates = nil

	resp, err := oneWay.PostForm("https://"+public+"/oauth/token", url.Values{"grant_type": {"client_credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token without credentials: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+public+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("client", "secret")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	getJSON(t, oneWay, req, http.StatusOK, &tok)
	if tok.AccessToken != srv.Token() {
		t.Fatalf("token %q", tok.AccessToken)
	}

	for i := range 5 {
		srv.Put(cc.SecurityGroup{GUID: fmt.Sprintf("g%d", i), Name: "n", RunningSpaces: []string{"s"}})
	}
	srv.SetPageLimit(2)
	var page struct {
		Pagination struct {
			TotalResults int `json:"total_results"`
			TotalPages   int `json:"total_pages"`
			Next         *struct {
				Href string `json:"href"`
			} `json:"next"`
		} `json:"pagination"`
		Resources []struct {
			GUID          string `json:"guid"`
			Relationships struct {
				RunningSpaces struct {
					Data []map[string]string `json:"data"`
				} `json:"running_spaces"`
			} `json:"relationships"`
		} `json:"resources"`
	}
	list := func(query string, token string, want int) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+public+"/v3/security_groups"+query, nil)
		req.Header.Set("Authorization", "bearer "+token)
		page.Resources = nil
		getJSON(t, oneWay, req, want, &page)
	}
	list("?per_page=5000&page=3", srv.Token(), http.StatusOK)
	if page.Pagination.TotalResults != 5 || page.Pagination.TotalPages != 3 || page.Pagination.Next != nil ||
		len(page.Resources) != 1 || page.Resources[0].GUID != "g4" || page.Resources[0].Relationships.RunningSpaces.Data[0]["guid"] != "s" {
		t.Errorf("last page: %+v", page)
	}
	list("?per_page=5000&page=1", "wrong", http.StatusUnauthorized)
	list("?per_page=5001", srv.Token(), http.StatusBadRequest)

	marker := func(c *http.Client, want int) time.Time {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+internal+"/internal/v4/asg_latest_update", nil)
		req.Header.Set("Authorization", "bearer "+srv.Token())
		var m struct {
			LastUpdate string `json:"last_update"`
		}
		getJSON(t, c, req, want, &m)
		ts, _ := time.Parse(time.RFC3339, m.LastUpdate)
		return ts
	}
	mutual := &http.Client{Transport: &http.Transport{TLSClientConfig: files.ClientConfig(t)}, Timeout: 5 * time.Second}
	before := marker(mutual, http.StatusOK)
	srv.PutV2(cc.SecurityGroup{GUID: "v2", Name: "v2"})
	if got := marker(mutual, http.StatusOK); !got.Equal(before) {
		t.Errorf("a v2 change moved the marker: %v → %v", before, got)
	}
	if err := srv.BindRunning("g0", "s2"); err != nil {
		t.Fatal(err)
	}
	if got := marker(mutual, http.StatusOK); !got.After(before) || !got.Equal(srv.LastUpdate()) {
		t.Errorf("a v3 change did not move the marker: %v → %v", before, got)
	}
	if _, err := oneWay.Get("https://" + internal + "/internal/v4/asg_latest_update"); err == nil {
		t.Error("the internal listener accepted a client without a certificate")
	}
	if srv.Requests(cc.LatestUpdate) != 3 || srv.Requests(cc.List) != 3 {
		t.Errorf("request counts: marker %d, list %d", srv.Requests(cc.LatestUpdate), srv.Requests(cc.List))
	}
}

func getJSON(t *testing.T, c *http.Client, req *http.Request, want int, out any) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", req.Method, req.URL, resp.StatusCode, want)
	}
	if want == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAdmin: the lab's write API creates, replaces and deletes groups and
// counts the listings served; deleting a group that is not there is an
// error naming the request.
func TestAdmin(t *testing.T) {
	srv := cc.New("client", "secret")
	api := httptest.NewServer(srv.AdminHandler())
	t.Cleanup(api.Close)
	admin := cc.Admin{Addr: strings.TrimPrefix(api.URL, "http://")}
	before := time.Now()
	g := cc.SecurityGroup{GUID: "outside", Name: "outside-service", RunningSpaces: []string{"space"},
		Rules: []cc.Rule{{Protocol: "tcp", Destination: "10.244.0.1", Ports: "9443"}}}
	at, err := admin.Put(g)
	if err != nil || at.Before(before) {
		t.Fatalf("put: %v at %v", err, at)
	}
	if got := srv.Groups(); len(got) != 1 || got[0].GUID != "outside" || got[0].Rules[0].Ports != "9443" || got[0].RunningSpaces[0] != "space" {
		t.Errorf("groups after put: %+v", got)
	}
	if n, err := admin.Requests(); err != nil || n != 0 {
		t.Errorf("requests: %d %v", n, err)
	}
	if _, err := admin.Delete("outside"); err != nil || len(srv.Groups()) != 0 {
		t.Errorf("delete: %v, left %+v", err, srv.Groups())
	}
	if _, err := admin.Delete("outside"); err == nil || !strings.Contains(err.Error(), "DELETE /security_groups/outside: 404") {
		t.Errorf("second delete: %v", err)
	}
}
