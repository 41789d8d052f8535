package cfplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/netman-release/netman/src/jsonhttp"
)

// cloudController resolves app names in the targeted space with Cloud
// Controller's v3 API, as the cf CLI's own network policy commands do
// (upstream's plugin went through CliConnection.GetApp, i.e. CC v2).
type cloudController struct {
	base string // the CLI's API endpoint
	api  jsonhttp.Client
}

// newCloudController calls the CC at base (the CLI's API endpoint) with the
// CLI's token ("bearer ...", as the CLI hands it out).
func newCloudController(base string, httpClient *http.Client, token string) *cloudController {
	base = strings.TrimRight(base, "/")
	return &cloudController{base: base, api: jsonhttp.Client{
		HTTP:   httpClient,
		Header: http.Header{"Authorization": {token}, "Accept": {"application/json"}, "User-Agent": {userAgent}},
		Words: jsonhttp.Words{
			Send: func(_ jsonhttp.Call, err error) error {
				return fmt.Errorf("cannot reach cloud controller at %s: %w", base, jsonhttp.Bare(err))
			},
			Read:   jsonhttp.Prefix("cloud controller: reading answer"),
			Decode: jsonhttp.Prefix("cloud controller: decoding answer"),
			Status: func(_ jsonhttp.Call, se *jsonhttp.StatusError) error {
				return se.Reword("cloud controller: http status %d: %s", se.Code, ccErrorMessage(se))
			},
		},
	}}
}

// maxPages bounds how many pages of apps are followed.
const maxPages = 100

type ccApp struct {
	GUID string `json:"guid"`
	Name string `json:"name"`
}

type ccAppsPage struct {
	Resources  []ccApp `json:"resources"`
	Pagination struct {
		Next *struct {
			Href string `json:"href"`
		} `json:"next"`
	} `json:"pagination"`
}

// appGUID returns the guid of the app called name in the space, or "" when
// there is none.
func (c *cloudController) appGUID(ctx context.Context, name, spaceGUID string) (string, error) {
	q := url.Values{"names": {name}, "space_guids": {spaceGUID}}
	var page ccAppsPage
	if err := c.get(ctx, c.base+"/v3/apps?"+q.Encode(), &page); err != nil {
		return "", err
	}
	for _, a := range page.Resources {
		if a.Name == name {
			return a.GUID, nil
		}
	}
	return "", nil
}

// spaceApps maps the guid of every app in the space to its name.
func (c *cloudController) spaceApps(ctx context.Context, spaceGUID string) (map[string]string, error) {
	apps := map[string]string{}
	next := c.base + "/v3/apps?" + url.Values{"space_guids": {spaceGUID}, "per_page": {"5000"}}.Encode()
	for range maxPages {
		var page ccAppsPage
		if err := c.get(ctx, next, &page); err != nil {
			return nil, err
		}
		for _, a := range page.Resources {
			apps[a.GUID] = a.Name
		}
		if page.Pagination.Next == nil || page.Pagination.Next.Href == "" {
			return apps, nil
		}
		// Follow only the path and query, on the endpoint we trust.
		u, err := url.Parse(page.Pagination.Next.Href)
		base, berr := url.Parse(c.base)
		if err != nil || berr != nil {
			return nil, fmt.Errorf("cloud controller: bad next page %q", page.Pagination.Next.Href)
		}
		next = base.Scheme + "://" + base.Host + u.RequestURI()
	}
	return nil, fmt.Errorf("cloud controller: more than %d pages of apps", maxPages)
}

// get reads target, a whole URL (the endpoint's, or a next page's).
func (c *cloudController) get(ctx context.Context, target string, into any) error {
	_, err := c.api.Do(ctx, jsonhttp.Request{Path: target}, into)
	return err
}

// ccErrorMessage is the detail of CC v3's {"errors":[{"detail","title","code"}]}.
func ccErrorMessage(se *jsonhttp.StatusError) string {
	var e struct {
		Errors []struct {
			Detail string `json:"detail"`
			Title  string `json:"title"`
		} `json:"errors"`
	}
	if json.Unmarshal([]byte(se.Body), &e) == nil && len(e.Errors) > 0 {
		msgs := make([]string, len(e.Errors))
		for i, x := range e.Errors {
			msgs[i] = x.Detail
			if x.Title != "" {
				msgs[i] += " (" + x.Title + ")"
			}
		}
		return strings.Join(msgs, "; ")
	}
	return se.Excerpt()
}
