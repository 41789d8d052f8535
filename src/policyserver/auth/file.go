package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/policy"
)

// FileEntry is one token of the opt-in tokens file (netman extension, config
// key auth_tokens_file): who the bearer is, the scopes they hold, and, for
// non-admins, the app guids whose policies they may manage and see.
type FileEntry struct {
	UserName string   `json:"user_name"`
	Scopes   []string `json:"scopes"`
	AppGUIDs []string `json:"app_guids"`
}

// FileAuth verifies bearer tokens against the tokens file instead of UAA,
// for labs and single-machine use without UAA and Cloud Controller. The
// file is a JSON object mapping each token to a FileEntry:
//
//	{"admin-secret": {"user_name": "admin", "scopes": ["network.admin"]},
//	 "dev-secret":   {"user_name": "dev", "scopes": ["network.write"], "app_guids": ["a", "b"]}}
//
// Tokens are kept only as SHA-256 digests, so a lookup's timing says
// nothing useful about any token.
type FileAuth struct {
	tokens map[[sha256.Size]byte]Token
	users  []string
}

// LoadTokensFile reads and validates the tokens file, naming every problem.
func LoadTokensFile(path string) (*FileAuth, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading tokens file: %w", err)
	}
	var entries map[string]FileEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields() // a misspelt "app_guids" must not widen access
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("parsing tokens file %s: %w", path, err)
	}
	var p configfile.Problems
	if len(entries) == 0 {
		p.Addf("no tokens")
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f := &FileAuth{tokens: make(map[[sha256.Size]byte]Token, len(entries))}
	for i, tok := range keys {
		e := entries[tok]
		name := fmt.Sprintf("token #%d (user %q)", i+1, e.UserName)
		if tok == "" || strings.TrimSpace(tok) != tok || strings.ContainsAny(tok, " \t\r\n,") {
			p.Addf("%s: a token must be non-empty, without spaces or commas", name)
		}
		if e.UserName == "" {
			p.Addf("%s: user_name: missing required value", name)
		}
		for _, g := range e.AppGUIDs {
			if g == "" {
				p.Addf("%s: app_guids: empty guid", name)
			}
		}
		f.tokens[sha256.Sum256([]byte(tok))] = Token{
			Scope:    slices.Clone(e.Scopes),
			Subject:  e.UserName,
			UserID:   e.UserName,
			UserName: e.UserName,
			Apps:     slices.Clone(e.AppGUIDs),
		}
		f.users = append(f.users, e.UserName)
	}
	if probs := p.List(); len(probs) > 0 {
		return nil, fmt.Errorf("invalid tokens file %s: %s", path, strings.Join(probs, "; "))
	}
	return f, nil
}

// Users lists the user names in the file, for the start-up warning.
func (f *FileAuth) Users() []string { return slices.Clone(f.users) }

// CheckToken looks token up in the file.
func (f *FileAuth) CheckToken(_ context.Context, token string) (Token, error) {
	tok, ok := f.tokens[sha256.Sum256([]byte(token))]
	if !ok {
		return Token{}, fmt.Errorf("%w: not in the tokens file", ErrInvalidToken)
	}
	tok.Scope, tok.Apps = slices.Clone(tok.Scope), slices.Clone(tok.Apps)
	return tok, nil
}

// FileAccess is the Access of file tokens: a non-admin may manage and see a
// policy only when both its apps are among the token's app_guids.
type FileAccess struct{}

// CheckAccess reports whether every app of policies is one of tok's apps.
func (FileAccess) CheckAccess(_ context.Context, tok Token, policies []policy.Policy, _ bool) (bool, error) {
	if tok.IsAdmin() {
		return true, nil
	}
	apps := appSet(tok.Apps)
	for _, p := range policies {
		_, src := apps[p.Source.ID]
		_, dst := apps[p.Destination.ID]
		if !src || !dst {
			return false, nil
		}
	}
	return true, nil
}

// FilterPolicies keeps the policies between tok's apps.
func (FileAccess) FilterPolicies(_ context.Context, tok Token, policies []policy.Policy) ([]policy.Policy, error) {
	if tok.IsAdmin() {
		return policies, nil
	}
	apps := appSet(tok.Apps)
	out := []policy.Policy{}
	for _, p := range policies {
		_, src := apps[p.Source.ID]
		_, dst := apps[p.Destination.ID]
		if src && dst {
			out = append(out, p)
		}
	}
	return out, nil
}

func appSet(guids []string) map[string]struct{} {
	m := make(map[string]struct{}, len(guids))
	for _, g := range guids {
		m[g] = struct{}{}
	}
	return m
}
