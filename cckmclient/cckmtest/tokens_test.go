package cckmtest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPasswordGrant(t *testing.T) {
	cases := []struct {
		name       string
		domain     string // Options.Domain
		path       string
		body       any
		wantStatus int
		wantCode   int
	}{
		{"right credentials get a token", "", "/api/v1/auth/tokens",
			map[string]any{"grant_type": "password", "username": testUser, "password": testPassword}, 200, 0},
		{"the trailing slash form works too", "", "/api/v1/auth/tokens/",
			map[string]any{"grant_type": "password", "username": testUser, "password": testPassword}, 200, 0},
		{"any domain is accepted when none is configured", "", "/api/v1/auth/tokens",
			map[string]any{"grant_type": "password", "username": testUser, "password": testPassword, "domain": "x"}, 200, 0},
		{"the configured domain is accepted", "root", "/api/v1/auth/tokens",
			map[string]any{"grant_type": "password", "username": testUser, "password": testPassword, "domain": "root"}, 200, 0},
		{"another domain is refused", "root", "/api/v1/auth/tokens",
			map[string]any{"grant_type": "password", "username": testUser, "password": testPassword, "domain": "x"}, 401, 5},
		{"a wrong password is refused", "", "/api/v1/auth/tokens",
			map[string]any{"grant_type": "password", "username": testUser, "password": "nope"}, 401, 5},
		{"a wrong user is refused", "", "/api/v1/auth/tokens",
			map[string]any{"grant_type": "password", "username": "eve", "password": testPassword}, 401, 5},
		{"an unknown grant type is a bad request", "", "/api/v1/auth/tokens",
			map[string]any{"grant_type": "magic"}, 400, 9},
		{"a body that is not JSON is a bad request", "", "/api/v1/auth/tokens", "not an object", 400, 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server := newTestServer(t, Options{Domain: tc.domain})
			answer := mustSend(t, server.Client(), http.MethodPost, server.URL()+tc.path, "", tc.body)
			if tc.wantStatus != http.StatusOK {
				requireCMError(t, answer, tc.wantStatus, tc.wantCode, "")
				require.Empty(t, server.Grants())
				return
			}
			require.Equal(t, http.StatusOK, answer.status, "body %s", answer.body)
			var token tokenResponse
			require.NoError(t, json.Unmarshal(answer.body, &token))
			require.Equal(t, "Bearer", token.TokenType)
			require.EqualValues(t, 300, token.Duration)
			require.NotEmpty(t, token.RefreshToken)
			require.True(t, isUUID(token.RefreshTokenID))
			require.True(t, isUUID(token.ClientID))
			require.Equal(t, map[string]int{"password": 1}, server.Grants())
		})
	}
}

func TestWrongPasswordHasTheDocumentedBody(t *testing.T) {
	server := newTestServer(t, Options{})
	answer := requestToken(t, server, map[string]any{"grant_type": "password", "username": testUser, "password": "x"})
	requireCMError(t, answer, http.StatusUnauthorized, 5, "Wrong username or password.")
	require.Equal(t, "NCERRUnauthorizedAccess: Unauthorized", answer.object(t)["codeDesc"])
}

func TestEveryPasswordGrantIssuesANewRefreshToken(t *testing.T) {
	server := newTestServer(t, Options{})
	first, second := login(t, server), login(t, server)
	require.NotEqual(t, first.RefreshToken, second.RefreshToken)
	require.NotEqual(t, first.JWT, second.JWT)
}

func TestIssuedJWTIsAThreePartTokenWithTheExpectedClaims(t *testing.T) {
	server := newTestServer(t, Options{TokenLifetime: 1500 * time.Millisecond})
	before := time.Now().Unix()
	token := login(t, server)
	require.EqualValues(t, 2, token.Duration, "1.5s rounds up to 2s")

	parts := strings.Split(token.JWT, ".")
	require.Len(t, parts, 3)
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	require.JSONEq(t, `{"alg":"HS256","typ":"JWT"}`, string(header))
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims jwtClaims
	require.NoError(t, json.Unmarshal(payload, &claims))
	require.Equal(t, "kylo", claims.Issuer)
	require.NotEmpty(t, claims.Subject)
	require.NotEmpty(t, claims.ID)
	require.GreaterOrEqual(t, claims.IssuedAt, before)
	require.InDelta(t, claims.IssuedAt+1, claims.Expires, 1)
	require.NotEmpty(t, parts[2])
}

func TestRefreshGrant(t *testing.T) {
	t.Run("the initial refresh token is accepted and kept without renewal", func(t *testing.T) {
		server := newTestServer(t, Options{RefreshToken: "initial"})
		for range 2 {
			answer := requestToken(t, server, map[string]any{"grant_type": "refresh_token", "refresh_token": "initial"})
			require.Equal(t, http.StatusOK, answer.status, "body %s", answer.body)
			require.Equal(t, "initial", answer.object(t)["refresh_token"])
		}
		require.Equal(t, map[string]int{"refresh_token": 2}, server.Grants())
	})
	t.Run("renewal answers a new refresh token and revokes the old one", func(t *testing.T) {
		server := newTestServer(t, Options{RefreshToken: "initial"})
		renew := func(refreshToken string) response {
			return requestToken(t, server, map[string]any{
				"grant_type": "refresh_token", "refresh_token": refreshToken, "renew_refresh_token": true,
			})
		}
		answer := renew("initial")
		require.Equal(t, http.StatusOK, answer.status, "body %s", answer.body)
		renewed := answer.object(t)["refresh_token"].(string)
		require.NotEqual(t, "initial", renewed)

		requireCMError(t, renew("initial"), http.StatusUnauthorized, 5, "")
		require.Equal(t, http.StatusOK, renew(renewed).status)
	})
	t.Run("an unknown refresh token is refused", func(t *testing.T) {
		server := newTestServer(t, Options{})
		answer := requestToken(t, server, map[string]any{"grant_type": "refresh_token", "refresh_token": "nope"})
		requireCMError(t, answer, http.StatusUnauthorized, 5, "")
	})
	t.Run("a refresh token from a password grant works", func(t *testing.T) {
		server := newTestServer(t, Options{})
		token := login(t, server)
		answer := requestToken(t, server, map[string]any{"grant_type": "refresh_token", "refresh_token": token.RefreshToken})
		require.Equal(t, http.StatusOK, answer.status)
		server.AddJob(Refresh, refreshID)
		jwt := answer.object(t)["jwt"].(string)
		require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, jwt).status)
	})
	t.Run("revoked refresh tokens force the password grant", func(t *testing.T) {
		server := newTestServer(t, Options{RefreshToken: "initial"})
		token := login(t, server)
		server.RevokeRefreshTokens()
		for _, refreshToken := range []string{"initial", token.RefreshToken} {
			answer := requestToken(t, server, map[string]any{"grant_type": "refresh_token", "refresh_token": refreshToken})
			requireCMError(t, answer, http.StatusUnauthorized, 5, "")
		}
		login(t, server)
	})
}
