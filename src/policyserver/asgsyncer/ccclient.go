package asgsyncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"
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

// maxBodyBytes bounds one response: a page of 5000 security groups with
// many rules each stays well below it.
const maxBodyBytes = 256 << 20

// ErrUnstableList means asg_latest_update moved while the pages were read,
// or the pages did not add up to one consistent listing: the listing may
// mix two states of Cloud Controller and is thrown away.
var ErrUnstableList = errors.New("unstable security group list")

// CCClient reads security groups from Cloud Controller: the listing from
// the public v3 API (cc_url) and the latest-update marker from the internal
// mutual TLS API (cc_internal_url), both with the client token.
type CCClient struct {
	logger      lager.Logger
	public      *http.Client
	internal    *http.Client
	publicURL   string
	internalURL string
}

// NewCCClient returns a client of Cloud Controller's public API at
// publicURL and its internal API at internalURL.
func NewCCClient(logger lager.Logger, public *http.Client, publicURL string, internal *http.Client, internalURL string) *CCClient {
	return &CCClient{
		logger:      logger,
		public:      public,
		internal:    internal,
		publicURL:   strings.TrimSuffix(publicURL, "/"),
		internalURL: strings.TrimSuffix(internalURL, "/"),
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
	Rules         []CCRule `json:"rules"`
	Relationships struct {
		StagingSpaces spaceRelationship `json:"staging_spaces"`
		RunningSpaces spaceRelationship `json:"running_spaces"`
	} `json:"relationships"`
}

// CCRule is one rule of a security group, with upstream's keys in
// upstream's order; missing keys are stored as their zero values, as
// upstream stores them.
type CCRule struct {
	Protocol    string `json:"protocol"`
	Destination string `json:"destination"`
	Ports       string `json:"ports"`
	Type        int    `json:"type"`
	Code        int    `json:"code"`
	Description string `json:"description"`
	Log         bool   `json:"log"`
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

// CCError is a non-2xx answer from Cloud Controller.
type CCError struct {
	Route      string
	StatusCode int
	Body       string
}

func (e *CCError) Error() string {
	return fmt.Sprintf("cloud controller GET %s: status %d: %s", e.Route, e.StatusCode, e.Body)
}

// LatestUpdate is GET /internal/v4/asg_latest_update: the time of the last
// v3 security group change. 404 (a Cloud Controller without the endpoint)
// is the zero time, as upstream.
func (c *CCClient) LatestUpdate(ctx context.Context, token string) (time.Time, error) {
	c.logger.Debug("get-security-groups-last-update")
	var resp struct {
		LastUpdate *string `json:"last_update"`
	}
	err := c.get(ctx, c.internal, c.internalURL, "/internal/v4/asg_latest_update", token, &resp)
	var ce *CCError
	if errors.As(err, &ce) && ce.StatusCode == http.StatusNotFound {
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
	return nil, time.Time{}, fmt.Errorf("Ran out of retry attempts. Last error was: %w", err) //nolint:staticcheck // upstream's capitalised text
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
	if err := c.get(ctx, c.public, c.publicURL, route, token, &resp); err != nil {
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

func (c *CCClient) get(ctx context.Context, client *http.Client, base, route, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+route, nil)
	if err != nil {
		return fmt.Errorf("building cloud controller request: %w", err)
	}
	req.Header.Set("Authorization", "bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cloud controller GET %s: %w", route, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("cloud controller GET %s: read body: %w", route, err)
	}
	if len(body) > maxBodyBytes {
		return fmt.Errorf("cloud controller GET %s: response larger than %d bytes", route, maxBodyBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &CCError{Route: route, StatusCode: resp.StatusCode, Body: truncate(string(body), 512)}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("cloud controller GET %s: unmarshal json: %w", route, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
