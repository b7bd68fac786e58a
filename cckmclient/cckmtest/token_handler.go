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

// handleTokens serves the password and refresh_token grants, with any scripted step.
func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) {
	s.tokenRequests.Add(1)
	var request tokenRequest
	body, readErr := io.ReadAll(io.LimitReader(r.Body, maxTokenRequestBytes))
	parseErr := json.Unmarshal(body, &request)
	call, index := s.begin(r, Call{Op: opToken, Grant: request.GrantType, BodySize: int64(len(body))})
	step := s.nextTokenStep(call)
	status := 0
	switch {
	case !s.sleep(r, step.Delay):
	case step.Hang:
		s.hang(r)
	case step.Drop:
	default:
		if step.RetryAfter != "" {
			w.Header().Set("Retry-After", step.RetryAfter)
		}
		switch {
		case step.replaces():
			status = writeScripted(w, step.Status, step.Body, 0)
		case readErr != nil || parseErr != nil:
			status = writeCMError(w, http.StatusBadRequest, "Invalid JSON body")
		default:
			status = s.grant(w, request, step)
		}
	}
	s.finish(r, index, status)
	if status == 0 {
		drop(w)
	}
}

// grant answers a parsed token request, its token shaped by step.
func (s *Server) grant(w http.ResponseWriter, request tokenRequest, step TokenStep) int {
	switch request.GrantType {
	case grantPassword:
		if !s.passwordMatches(request) {
			return writeCMError(w, http.StatusUnauthorized, "Wrong username or password.")
		}
		return writeJSON(w, http.StatusOK, s.tokens.passwordGrant(request.Username, step))
	case grantRefreshToken:
		response, valid := s.tokens.refreshGrant(request.RefreshToken, request.RenewRefreshToken, step)
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
