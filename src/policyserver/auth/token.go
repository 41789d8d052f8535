// Package auth decides who may do what on the external policy API: it
// verifies bearer tokens (UAA check_token, or the opt-in tokens file), asks
// Cloud Controller which spaces apps live in and which spaces a user
// develops in (the policy guard and the list filter), and enforces the
// per-source policy quota. It knows nothing about HTTP routes; the external
// API maps its answers to responses.
package auth

import (
	"context"
	"errors"
	"slices"
)

// Scopes the external API checks.
const (
	ScopeAdmin = "network.admin"
	ScopeWrite = "network.write"
)

// Token is what the policy server knows about a verified bearer token: the
// fields upstream reads from UAA's check_token answer. Apps is set only by
// the opt-in tokens file: the app guids a non-admin may manage.
type Token struct {
	ClientID string   `json:"client_id"`
	Scope    []string `json:"scope"`
	Subject  string   `json:"sub"`
	UserID   string   `json:"user_id"`
	UserName string   `json:"user_name"`

	Apps []string `json:"-"`
}

// IsAdmin reports whether the token carries network.admin; admins skip the
// policy guard, the quota and the list filter.
func (t Token) IsAdmin() bool { return slices.Contains(t.Scope, ScopeAdmin) }

// HasAnyScope reports whether any of the token's scopes is in allowed.
func (t Token) HasAnyScope(allowed []string) bool {
	for _, s := range t.Scope {
		if slices.Contains(allowed, s) {
			return true
		}
	}
	return false
}

// WhoAmI is the subject the whoami route reports: the user name, or the
// subject for client tokens, which have none.
func (t Token) WhoAmI() string {
	if t.UserName != "" {
		return t.UserName
	}
	return t.Subject
}

// ErrInvalidToken is returned (wrapped) by verifiers for a token they do
// not accept; any other error means the verifier could not decide. The API
// answers both with 401, as upstream.
var ErrInvalidToken = errors.New("invalid token")

// Verifier checks a bearer token.
type Verifier interface {
	CheckToken(ctx context.Context, token string) (Token, error)
}
