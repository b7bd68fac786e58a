package cckmtest

import (
	"encoding/json"
	"io"
	"net/http"
)

// tokenRequest is the body of POST /api/v1/auth/tokens.
type tokenRequest struct {
	GrantType         string `json:"grant_type"`
	Username          string `json:"username"`
	Password          string `json:"password"`
	Domain            string `json:"domain"`
	RefreshToken      string `json:"refresh_token"`
	RenewRefreshToken bool   `json:"renew_refresh_token"`
}

// maxTokenRequestBytes bounds the token request body the fake reads.
const maxTokenRequestBytes = 1 << 20

// handleTokens serves the password and refresh_token grants.
func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) {
	var request tokenRequest
	body, readErr := io.ReadAll(io.LimitReader(r.Body, maxTokenRequestBytes))
	parseErr := json.Unmarshal(body, &request)
	_, index := s.begin(r, Call{Op: opToken, Grant: request.GrantType})
	var status int
	switch {
	case readErr != nil || parseErr != nil:
		status = writeCMError(w, http.StatusBadRequest, "Invalid JSON body")
	default:
		status = s.grant(w, request)
	}
	s.finish(r, index, status)
}

// grant answers a parsed token request.
func (s *Server) grant(w http.ResponseWriter, request tokenRequest) int {
	switch request.GrantType {
	case grantPassword:
		if !s.passwordMatches(request) {
			return writeCMError(w, http.StatusUnauthorized, "Wrong username or password.")
		}
		return writeJSON(w, http.StatusOK, s.tokens.passwordGrant(request.Username))
	case grantRefreshToken:
		response, valid := s.tokens.refreshGrant(request.RefreshToken, request.RenewRefreshToken)
		if !valid {
			return writeCMError(w, http.StatusUnauthorized, "Invalid refresh token.")
		}
		return writeJSON(w, http.StatusOK, response)
	default:
		return writeCMError(w, http.StatusBadRequest,
			"Invalid grant_type: must be password or refresh_token.")
	}
}

// passwordMatches reports whether a password grant carries the configured credentials.
func (s *Server) passwordMatches(request tokenRequest) bool {
	if s.opts.Username == "" {
		return false
	}
	if request.Username != s.opts.Username || request.Password != s.opts.Password {
		return false
	}
	return s.opts.Domain == "" || request.Domain == s.opts.Domain
}
