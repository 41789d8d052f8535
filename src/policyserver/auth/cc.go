package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/jsonhttp"
)

// maxSpacePages bounds how many pages of a user's spaces are followed, so a
// misbehaving Cloud Controller (a next_url that never ends) cannot hold a
// request forever; 1000 pages of 100 is far beyond any real user.
const maxSpacePages = 1000

// CCClient asks Cloud Controller, with the policy server's client token,
// exactly what upstream asks: /v3/apps for app → space, /v2/spaces for a
// space's name and org and for space-developer membership, and
// /v2/users/:guid/spaces for every space of a user.
type CCClient struct {
	api    jsonhttp.Client
	logger lager.Logger
}

// NewCCClient returns a client of the Cloud Controller at baseURL (cc_url).
func NewCCClient(logger lager.Logger, httpClient *http.Client, baseURL string) *CCClient {
	return &CCClient{
		api: jsonhttp.Client{
			HTTP:   httpClient,
			Base:   strings.TrimSuffix(baseURL, "/"),
			Header: http.Header{"Accept": {"application/json"}},
			Words:  ccWords,
		},
		logger: logger,
	}
}

// ccWords are upstream's for a failed Cloud Controller call. A non-2xx
// answer says the "error" of a JSON body when it has one, else the raw body.
var ccWords = jsonhttp.Words{
	Request: jsonhttp.Prefix("building cc request"),
	Send: func(c jsonhttp.Call, err error) error {
		return fmt.Errorf("cc request %s %s: %w", c.Method, c.Path, err)
	},
	Read: func(c jsonhttp.Call, err error) error {
		return fmt.Errorf("cc response %s %s: read body: %w", c.Method, c.Path, err)
	},
	Decode: func(c jsonhttp.Call, err error) error {
		return fmt.Errorf("cc response %s %s: unmarshal json: %w", c.Method, c.Path, err)
	},
	Status: func(_ jsonhttp.Call, se *jsonhttp.StatusError) error {
		msg := se.Message()
		if msg == "" {
			msg = se.Body
		}
		return se.Reword("cloud controller: status %d: %s", se.Code, msg)
	},
}

// IsUnauthorized reports whether err is CC refusing the client token.
func IsUnauthorized(err error) bool {
	return jsonhttp.IsStatus(err, http.StatusUnauthorized)
}

// Space is the part of a v2 space the guard needs.
type Space struct {
	Name             string `json:"name"`
	OrganizationGUID string `json:"organization_guid"`
}

type appsV3Response struct {
	Pagination struct {
		TotalPages int `json:"total_pages"`
	} `json:"pagination"`
	Resources []struct {
		GUID  string `json:"guid"`
		Links struct {
			Space struct {
				Href string `json:"href"`
			} `json:"space"`
		} `json:"links"`
	} `json:"resources"`
}

type spacesV2Response struct {
	NextURL   string `json:"next_url"`
	Resources []struct {
		Metadata struct {
			GUID string `json:"guid"`
		} `json:"metadata"`
		Entity Space `json:"entity"`
	} `json:"resources"`
}

// AppSpaces maps each app guid CC knows to its space guid (the last path
// segment of links.space.href). Apps CC does not know are absent.
func (c *CCClient) AppSpaces(ctx context.Context, token string, appGUIDs []string) (map[string]string, error) {
	if len(appGUIDs) == 0 {
		return map[string]string{}, nil
	}
	c.logger.Debug("get-app-spaces", lager.Data{"count": len(appGUIDs)})
	resp, err := c.apps(ctx, token, appGUIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(resp.Resources))
	for _, r := range resp.Resources {
		href := r.Links.Space.Href
		out[r.GUID] = href[strings.LastIndexByte(href, '/')+1:]
	}
	return out, nil
}

// LiveAppGUIDs returns the subset of appGUIDs that CC knows.
func (c *CCClient) LiveAppGUIDs(ctx context.Context, token string, appGUIDs []string) (map[string]struct{}, error) {
	c.logger.Debug("get-live-app-guids", lager.Data{"count": len(appGUIDs)})
	resp, err := c.apps(ctx, token, appGUIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]struct{}, len(resp.Resources))
	for _, r := range resp.Resources {
		out[r.GUID] = struct{}{}
	}
	return out, nil
}

// apps is GET /v3/apps?guids=<g1,g2>&per_page=<n>: one page always holds
// every asked-for app, so more than one page is an error, as upstream.
func (c *CCClient) apps(ctx context.Context, token string, appGUIDs []string) (appsV3Response, error) {
	q := url.Values{}
	q.Set("guids", strings.Join(appGUIDs, ","))
	q.Set("per_page", strconv.Itoa(len(appGUIDs)))
	var resp appsV3Response
	if err := c.get(ctx, token, "/v3/apps?"+q.Encode(), &resp); err != nil {
		return appsV3Response{}, err
	}
	if resp.Pagination.TotalPages > 1 {
		return appsV3Response{}, errors.New("pagination support not yet implemented")
	}
	return resp, nil
}

// Space returns a space's name and org, or nil when CC answers 404.
func (c *CCClient) Space(ctx context.Context, token, spaceGUID string) (*Space, error) {
	c.logger.Debug("get-space", lager.Data{"space_guid": spaceGUID})
	var resp struct {
		Entity Space `json:"entity"`
	}
	if err := c.get(ctx, token, "/v2/spaces/"+url.PathEscape(spaceGUID), &resp); err != nil {
		if jsonhttp.IsStatus(err, http.StatusNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return &resp.Entity, nil
}

// IsSpaceDeveloper reports whether subject is a developer of space: CC's
// v2 space search by developer, name and org finds exactly that space.
// More than one match is an error, as upstream.
func (c *CCClient) IsSpaceDeveloper(ctx context.Context, token, subject string, space Space) (bool, error) {
	c.logger.Debug("get-subject-space", lager.Data{"subject": subject, "space": space.Name})
	q := url.Values{}
	q.Add("q", "developer_guid:"+subject)
	q.Add("q", "name:"+space.Name)
	q.Add("q", "organization_guid:"+space.OrganizationGUID)
	var resp spacesV2Response
	if err := c.get(ctx, token, "/v2/spaces?"+q.Encode(), &resp); err != nil {
		return false, err
	}
	switch len(resp.Resources) {
	case 0:
		return false, nil
	case 1:
		return true, nil
	default:
		return false, errors.New("found more than one matching space")
	}
}

// SubjectSpaces returns the guids of every space subject belongs to,
// following next_url (a path relative to cc_url) page by page.
func (c *CCClient) SubjectSpaces(ctx context.Context, token, subject string) (map[string]struct{}, error) {
	c.logger.Debug("get-subject-spaces", lager.Data{"subject": subject})
	route := "/v2/users/" + url.PathEscape(subject) + "/spaces?results-per-page=100"
	out := map[string]struct{}{}
	seen := map[string]bool{}
	for pages := 0; route != ""; pages++ {
		if pages == maxSpacePages || seen[route] {
			return nil, fmt.Errorf("listing spaces of %s: too many pages or a pagination loop at %q", subject, route)
		}
		seen[route] = true
		var resp spacesV2Response
		if err := c.get(ctx, token, route, &resp); err != nil {
			return nil, err
		}
		for _, r := range resp.Resources {
			out[r.Metadata.GUID] = struct{}{}
		}
		route = resp.NextURL
		if route != "" && !strings.HasPrefix(route, "/") {
			// next_url is relative to cc_url; anything else would send the
			// client token to another host.
			return nil, fmt.Errorf("listing spaces of %s: next_url %q is not a path", subject, route)
		}
	}
	return out, nil
}

func (c *CCClient) get(ctx context.Context, token, route string, out any) error {
	_, err := c.api.Do(ctx, jsonhttp.Request{Path: route, Header: http.Header{"Authorization": {"bearer " + token}}}, out)
	return err
}
