package cckmclient

import (
	"context"
	"errors"
	"net/http"
)

// Login gets a token from CipherTrust Manager now, as the first call would
// have: one password or refresh-token grant, whose token the calls that
// follow use (it is not a login more). It lets a process check its
// credentials at start. With a static token (CCKM_TOKEN) there is nothing
// to get: it returns nil and makes no call.
//
// A refused login is an *AuthError wrapping the token endpoint's *APIError
// (IsLoginRefused reports it); no answer, an *AuthError wrapping an
// *UnreachableError (Retryable).
func (c *Client) Login(ctx context.Context) error {
	if c.cfg.Credentials.Token != "" {
		return nil
	}
	_, _, err := c.tokens.token(ctx)
	return err
}

// IsLoginRefused reports whether err is CipherTrust Manager refusing the
// credentials at its token endpoint: a 401 or 403 answer to a grant, which
// trying again with the same credentials cannot change.
func IsLoginRefused(err error) bool {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.StatusCode == http.StatusUnauthorized || apiErr.StatusCode == http.StatusForbidden
}
