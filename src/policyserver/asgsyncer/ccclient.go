package asgsyncer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/policy"
)

// SecurityGroupsPerPage is the page size asked of Cloud Controller, as
// upstream.
const SecurityGroupsPerPage = 5000

// paginationAttempts is how many times one sync tries to read a listing
// during which asg_latest_update did not move, as upstream.
const paginationAttempts = 3

// maxPages bounds one listing: 1000 pages of 5000 is far beyond any real
// foundation, and a Cloud Controller whose next link never ends must not
// hold the syncer forever.
const maxPages = 1000

// ErrUnstableList means asg_latest_update moved while the pages were read,
// or the pages did not add up to one consistent listing: the listing may
// mix two states of Cloud Controller and is thrown away.
var ErrUnstableList = errors.New("unstable security group list")

// CCClient reads security groups from Cloud Controller: the listing from
// the public v3 API (cc_url) and the latest-update marker from the internal
// mutual TLS API (cc_internal_url), both with the client token.
type CCClient struct {
	logger   lager.Logger
	public   jsonhttp.Client
	internal jsonhttp.Client
}

// NewCCClient returns a client of Cloud Controller's public API at
// publicURL and its internal API at internalURL.
func NewCCClient(logger lager.Logger, public *http.Client, publicURL string, internal *http.Client, internalURL string) *CCClient {
	header := http.Header{"Accept": {"application/json"}}
	return &CCClient{
		logger:   logger,
		public:   jsonhttp.Client{HTTP: public, Base: strings.TrimSuffix(publicURL, "/"), Header: header, Words: ccWords},
		internal: jsonhttp.Client{HTTP: internal, Base: strings.TrimSuffix(internalURL, "/"), Header: header, Words: ccWords},
	}
}

// ccWords word a failed call as "cloud controller GET <route>: ...".
var ccWords = jsonhttp.Words{
	Request: jsonhttp.Prefix("building cloud controller request"),
	Send:    ccPrefix(""),
	Read:    ccPrefix("read body: "),
	Decode:  ccPrefix("unmarshal json: "),
	Status: func(c jsonhttp.Call, se *jsonhttp.StatusError) error {
		return se.Reword("cloud controller %s %s: status %d: %s", c.Method, c.Path, se.Code, se.Excerpt())
	},
}

func ccPrefix(what string) func(jsonhttp.Call, error) error {
	return func(c jsonhttp.Call, err error) error {
		return fmt.Errorf("cloud controller %s %s: %s%w", c.Method, c.Path, what, err)
	}
}

// CCSecurityGroup is one resource of GET /v3/security_groups: the fields
// upstream stores.
type CCSecurityGroup struct {
	GUID            string `json:"guid"`
	Name            string `json:"name"`
	GloballyEnabled struct {
		Running bool `json:"running"`
		Staging bool `json:"staging"`
	} `json:"globally_enabled"`
	Rules         []policy.SecurityGroupRule `json:"rules"`
	Relationships struct {
		StagingSpaces spaceRelationship `json:"staging_spaces"`
		RunningSpaces spaceRelationship `json:"running_spaces"`
	} `json:"relationships"`
}

type spaceRelationship struct {
	Data []map[string]string `json:"data"`
}

type href struct {
	Href string `json:"href"`
}

// securityGroupsPage is a page of the v3 listing. The pagination object
// and the resources key are required: a body without them is not a page
// (a proxy's error page, a truncated answer) and must never read as "no
// security groups".
type securityGroupsPage struct {
	Pagination *struct {
		TotalResults *int  `json:"total_results"`
		TotalPages   int   `json:"total_pages"`
		Next         *href `json:"next"`
	} `json:"pagination"`
	Resources *[]CCSecurityGroup `json:"resources"`
}

// LatestUpdate is GET /internal/v4/asg_latest_update: the time of the last
// v3 security group change. 404 (a Cloud Controller without the endpoint)
// is the zero time, as upstream.
func (c *CCClient) LatestUpdate(ctx context.Context, token string) (time.Time, error) {
	c.logger.Debug("get-security-groups-last-update")
	var resp struct {
		LastUpdate *string `json:"last_update"`
	}
	err := get(ctx, &c.internal, "/internal/v4/asg_latest_update", token, &resp)
	if jsonhttp.IsStatus(err, http.StatusNotFound) {
		c.logger.Info("get-security-groups-last-update-not-found")
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	if resp.LastUpdate == nil {
		return time.Time{}, errors.New("failed parsing last_update from cloud controller: no last_update in response")
	}
	t, err := time.Parse(time.RFC3339, *resp.LastUpdate)
	if err != nil {
		return time.Time{}, fmt.Errorf("failed parsing last_update from cloud controller: '%s'", *resp.LastUpdate)
	}
	c.logger.Debug("get-security-groups-last-update-response", lager.Data{"last_update": t})
	return t, nil
}

// SecurityGroups reads every security group, page by page, re-reading
// asg_latest_update after each page. A listing during which the marker
// moved, or whose pages do not add up (duplicates, a total that changed,
// fewer resources than announced), is thrown away and read again, up to
// three attempts. It returns the listing and the marker it is consistent
// with.
func (c *CCClient) SecurityGroups(ctx context.Context, token string) ([]CCSecurityGroup, time.Time, error) {
	c.logger.Info("get-security-groups")
	var err error
	for attempt := range paginationAttempts {
		c.logger.Debug("get-security-groups-retry-loop", lager.Data{"attempt": attempt})
		var groups []CCSecurityGroup
		var marker time.Time
		groups, marker, err = c.attemptPagination(ctx, token)
		if err == nil {
			return groups, marker, nil
		}
		if !errors.Is(err, ErrUnstableList) || ctx.Err() != nil {
			return nil, time.Time{}, err
		}
	}
	// Upstream's wording; the cause stays inspectable with errors.Is.
	//lint:ignore ST1005 upstream's exact, capitalised message
	return nil, time.Time{}, fmt.Errorf("Ran out of retry attempts. Last error was: %w", err)
}

func (c *CCClient) attemptPagination(ctx context.Context, token string) ([]CCSecurityGroup, time.Time, error) {
	c.logger.Debug("get-security-groups-attempt-pagination")
	original, err := c.LatestUpdate(ctx, token)
	if err != nil {
		return nil, time.Time{}, err
	}
	var groups []CCSecurityGroup
	seen := map[string]bool{}
	total := -1
	for page := 1; ; page++ {
		if page > maxPages {
			return nil, time.Time{}, fmt.Errorf("listing security groups: more than %d pages", maxPages)
		}
		resp, err := c.page(ctx, token, page)
		if err != nil {
			return nil, time.Time{}, err
		}
		now, err := c.LatestUpdate(ctx, token)
		if err != nil {
			return nil, time.Time{}, err
		}
		if !now.Equal(original) {
			c.logger.Debug("get-security-groups-timestamps-differ", lager.Data{"originalUpdatedAt": original, "newUpdatedAt": now})
			return nil, time.Time{}, fmt.Errorf("%w: last_update time has changed", ErrUnstableList)
		}
		pageTotal := *resp.Pagination.TotalResults
		if total >= 0 && pageTotal != total {
			return nil, time.Time{}, fmt.Errorf("%w: total_results changed from %d to %d at page %d", ErrUnstableList, total, pageTotal, page)
		}
		total = pageTotal
		for _, g := range *resp.Resources {
			if g.GUID == "" {
				return nil, time.Time{}, fmt.Errorf("security group without a guid on page %d", page)
			}
			if seen[g.GUID] {
				return nil, time.Time{}, fmt.Errorf("%w: security group %s listed twice", ErrUnstableList, g.GUID)
			}
			seen[g.GUID] = true
			groups = append(groups, g)
		}
		if resp.Pagination.Next == nil || resp.Pagination.Next.Href == "" || len(*resp.Resources) == 0 {
			c.logger.Debug("get-security-groups-last-page", lager.Data{"page": page})
			break
		}
	}
	if len(groups) != total {
		return nil, time.Time{}, fmt.Errorf("%w: read %d security groups, cloud controller announced %d", ErrUnstableList, len(groups), total)
	}
	return groups, original, nil
}

func (c *CCClient) page(ctx context.Context, token string, page int) (securityGroupsPage, error) {
	c.logger.Debug("get-security-groups-with-page", lager.Data{"page": page})
	route := fmt.Sprintf("/v3/security_groups?per_page=%d&page=%d", SecurityGroupsPerPage, page)
	var resp securityGroupsPage
	if err := get(ctx, &c.public, route, token, &resp); err != nil {
		return securityGroupsPage{}, err
	}
	if resp.Pagination == nil || resp.Pagination.TotalResults == nil {
		return securityGroupsPage{}, fmt.Errorf("cloud controller GET %s: response has no pagination.total_results", route)
	}
	if resp.Resources == nil {
		return securityGroupsPage{}, fmt.Errorf("cloud controller GET %s: response has no resources", route)
	}
	return resp, nil
}

func get(ctx context.Context, api *jsonhttp.Client, route, token string, out any) error {
	_, err := api.Do(ctx, jsonhttp.Request{Path: route, Header: http.Header{"Authorization": {"bearer " + token}}}, out)
	return err
}
