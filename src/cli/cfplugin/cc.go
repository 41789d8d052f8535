package cfplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// cloudController resolves app names in the targeted space with Cloud
// Controller's v3 API, as the cf CLI's own network policy commands do
// (upstream's plugin went through CliConnection.GetApp, i.e. CC v2).
type cloudController struct {
	base  string // the CLI's API endpoint
	http  *http.Client
	token string // "bearer ...", as the CLI hands it out
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

func (c *cloudController) get(ctx context.Context, target string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("cannot reach cloud controller at %s: %v", c.base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("cloud controller: reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cloud controller: http status %d: %s", resp.StatusCode, ccErrorMessage(body))
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("cloud controller: decoding answer: %w", err)
	}
	return nil
}

// ccErrorMessage is the detail of CC v3's {"errors":[{"detail","title","code"}]}.
func ccErrorMessage(body []byte) string {
	var e struct {
		Errors []struct {
			Detail string `json:"detail"`
			Title  string `json:"title"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		msgs := make([]string, len(e.Errors))
		for i, x := range e.Errors {
			msgs[i] = x.Detail
			if x.Title != "" {
				msgs[i] += " (" + x.Title + ")"
			}
		}
		return strings.Join(msgs, "; ")
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}
