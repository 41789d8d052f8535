package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/jsonhttp"
)

// UAAClient verifies user tokens (check_token) and obtains the policy
// server's own client-credentials token for Cloud Controller, both with
// HTTP Basic auth as the configured UAA client.
type UAAClient struct {
	api    jsonhttp.Client
	client string
	logger lager.Logger
	now    func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

// NewUAAClient returns a client of the UAA at baseURL ("<uaa_url>:<uaa_port>").
func NewUAAClient(logger lager.Logger, httpClient *http.Client, baseURL, clientName, clientSecret string) *UAAClient {
	basic := base64.StdEncoding.EncodeToString([]byte(clientName + ":" + clientSecret))
	return &UAAClient{
		api: jsonhttp.Client{
			HTTP:   httpClient,
			Base:   strings.TrimSuffix(baseURL, "/"),
			Header: http.Header{"Authorization": {"Basic " + basic}, "Accept": {"application/json"}},
			Words:  uaaWords,
		},
		client: clientName,
		logger: logger,
		now:    time.Now,
	}
}

// uaaWords are upstream's for a failed UAA call.
var uaaWords = jsonhttp.Words{
	Request: jsonhttp.Prefix("building uaa request"),
	Send:    jsonhttp.Prefix("http client"),
	Read:    jsonhttp.Prefix("read body"),
	Decode:  jsonhttp.Prefix("unmarshal json"),
	Status: func(_ jsonhttp.Call, se *jsonhttp.StatusError) error {
		return se.Reword("bad uaa response: %d: %s", se.Code, se.Body)
	},
}

// CheckToken asks UAA whether token is valid and what it grants. UAA
// answers 400 for a token it rejects (expired, forged, revoked); that error
// wraps ErrInvalidToken. Every other failure means UAA could not be asked.
func (c *UAAClient) CheckToken(ctx context.Context, token string) (Token, error) {
	c.logger.Debug("check-token")
	form := url.Values{"token": {token}}
	var tok Token
	if err := c.post(ctx, "/check_token", form, &tok); err != nil {
		if jsonhttp.IsStatus(err, http.StatusBadRequest) {
			return Token{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		return Token{}, err
	}
	return tok, nil
}

// tokenRefreshMargin is how long before its expiry a cached client token is
// replaced, so a token never expires between fetch and use.
const tokenRefreshMargin = time.Minute

// GetToken returns the policy server's client-credentials token. Upstream
// fetched a fresh one for every request; this client reuses it until a
// minute before it expires (or until Invalidate).
func (c *UAAClient) GetToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.token != "" && c.now().Before(c.expires) {
		defer c.mu.Unlock()
		return c.token, nil
	}
	c.mu.Unlock()

	// Fetched without the lock: a slow UAA must not queue every request
	// behind one fetch; concurrent misses may each fetch, which is harmless.
	c.logger.Debug("get-token")
	form := url.Values{"client_id": {c.client}, "grant_type": {"client_credentials"}}
	var resp struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := c.post(ctx, "/oauth/token", form, &resp); err != nil {
		return "", err
	}
	if resp.AccessToken == "" {
		return "", errors.New("uaa token response has no access_token")
	}
	if life := time.Duration(resp.ExpiresIn) * time.Second; life > 2*tokenRefreshMargin {
		c.mu.Lock()
		c.token, c.expires = resp.AccessToken, c.now().Add(life-tokenRefreshMargin)
		c.mu.Unlock()
	}
	return resp.AccessToken, nil
}

// Invalidate drops the cached client token, e.g. after CC refused it.
func (c *UAAClient) Invalidate() {
	c.mu.Lock()
	c.token, c.expires = "", time.Time{}
	c.mu.Unlock()
}

func (c *UAAClient) post(ctx context.Context, path string, form url.Values, out any) error {
	_, err := c.api.Do(ctx, jsonhttp.Request{Method: http.MethodPost, Path: path, Body: form}, out)
	return err
}
