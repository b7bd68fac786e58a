package cckmtest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// passwordBody is a password grant with the test credentials.
var passwordBody = map[string]any{"grant_type": "password", "username": testUser, "password": testPassword}

// decodeClaims returns the claims of a JWT the fake issued, as a map so that an absent claim
// shows.
func decodeClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	return claims
}

func TestScriptedTokenAnswersAreUsedInOrderAndEveryRequestIsCounted(t *testing.T) {
	server := newTestServer(t, Options{})
	server.ScriptTokens(
		TokenStep{Status: http.StatusServiceUnavailable, RetryAfter: "3"},
		TokenStep{Status: http.StatusTooManyRequests, RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"},
		TokenStep{Status: http.StatusBadGateway, Body: `{"code":14,"codeDesc":"NCERRX: custom","message":"custom"}`},
	)
	cases := []struct {
		status     int
		retryAfter string
		codeDesc   string
	}{
		{503, "3", "NCERRServiceUnavailable: Service unavailable"},
		{429, "Wed, 21 Oct 2015 07:28:00 GMT", "NCERRTooManyRequests: Too many requests"},
		{502, "", "NCERRX: custom"},
	}
	for _, want := range cases {
		answer := requestToken(t, server, passwordBody)
		require.Equal(t, want.status, answer.status, "body %s", answer.body)
		require.Equal(t, want.retryAfter, answer.header.Get("Retry-After"))
		require.Equal(t, want.codeDesc, answer.object(t)["codeDesc"])
	}
	require.Empty(t, server.Grants(), "no scripted failure is a grant")
	require.Equal(t, 3, server.TokenRequests())

	login(t, server) // normal again after the script
	requestToken(t, server, map[string]any{"grant_type": "password", "username": testUser, "password": "wrong"})
	require.Equal(t, map[string]int{"password": 1}, server.Grants())
	require.Equal(t, 5, server.TokenRequests(), "a refused login is a request too")
	require.Equal(t, []int{503, 429, 502, 200, 401}, tokenStatuses(server))
}

func TestAScriptedTokenFailureNeedsNoCredentials(t *testing.T) {
	server := newTestServer(t, Options{})
	server.ScriptTokens(TokenStep{Status: http.StatusInternalServerError})
	answer := requestToken(t, server, map[string]any{"grant_type": "magic"})
	requireCMError(t, answer, http.StatusInternalServerError, 14, "unexpected error")
}

func TestAScriptedTokenHangEndsWithTheClientAndIsCounted(t *testing.T) {
	server := newTestServer(t, Options{})
	server.ScriptTokens(TokenStep{Hang: true}, TokenStep{Delay: time.Hour})
	client := server.Client()
	client.Timeout = 100 * time.Millisecond
	for range 2 {
		started := time.Now()
		_, err := send(t, client, http.MethodPost, server.URL()+"/api/v1/auth/tokens", "", passwordBody)
		var timeout interface{ Timeout() bool }
		require.True(t, errors.As(err, &timeout) && timeout.Timeout(), "error %v", err)
		require.Less(t, time.Since(started), 5*time.Second)
	}
	require.Eventually(t, func() bool {
		statuses := tokenStatuses(server)
		return len(statuses) == 2 && statuses[0] == 0 && statuses[1] == 0
	}, 5*time.Second, 10*time.Millisecond, "neither was answered")
	require.Equal(t, 2, server.TokenRequests())
	require.Empty(t, server.Grants())
}

func TestAScriptedTokenDropIsANetworkError(t *testing.T) {
	server := newTestServer(t, Options{})
	server.ScriptTokens(TokenStep{Drop: true})
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	_, err := send(t, client, http.MethodPost, server.URL()+"/api/v1/auth/tokens", "", passwordBody)
	require.Error(t, err)
	require.Equal(t, 1, server.TokenRequests())
	require.Equal(t, []int{0}, tokenStatuses(server))
}

func TestAClockOffsetShiftsTheClaimsButNotTheRealLifetime(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(Refresh, refreshID)
	server.ScriptTokens(TokenStep{ClockOffset: -time.Hour})
	before := time.Now()
	token := login(t, server)

	claims := decodeClaims(t, token.JWT)
	hourAgo := float64(before.Add(-time.Hour).Unix())
	require.InDelta(t, hourAgo, claims["iat"], 2, "iat as a clock an hour behind writes it")
	require.InDelta(t, hourAgo+300, claims["exp"], 2, "exp too: in the past by our clock")
	require.EqualValues(t, 300, token.Duration, "the duration is relative, so a clock offset leaves it")
	require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, token.JWT).status,
		"the server accepts the JWT for its real lifetime")
}

func TestTokenStepsShapeTheAnsweredLifetime(t *testing.T) {
	tests := []struct {
		name         string
		step         TokenStep
		wantDuration int64
		wantIssuedAt bool
	}{
		{"a negative duration", TokenStep{Duration: -300}, -300, true},
		{"a huge duration", TokenStep{Duration: 1e12}, 1e12, true},
		{"no duration", TokenStep{NoDuration: true}, 0, true},
		{"no iat", TokenStep{NoIssuedAt: true}, 300, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := newTestServer(t, Options{})
			server.AddJob(BulkJob, bulkID)
			server.ScriptTokens(tt.step)
			token := login(t, server)
			require.Equal(t, tt.wantDuration, token.Duration)
			_, hasIssuedAt := decodeClaims(t, token.JWT)["iat"]
			require.Equal(t, tt.wantIssuedAt, hasIssuedAt)
			require.Equal(t, http.StatusOK, getJob(t, server, BulkJob, bulkID, token.JWT).status)
			require.Equal(t, map[string]int{"password": 1}, server.Grants())
		})
	}
}

func TestAShapingTokenStepStillChecksTheCredentials(t *testing.T) {
	server := newTestServer(t, Options{})
	server.ScriptTokens(TokenStep{ClockOffset: -time.Hour, NoDuration: true})
	answer := requestToken(t, server, map[string]any{"grant_type": "password", "username": testUser, "password": "x"})
	requireCMError(t, answer, http.StatusUnauthorized, 5, "Wrong username or password.")
	require.EqualValues(t, 300, login(t, server).Duration, "the step was used by the refused request")
}

func TestTheTokenFaultHookAppliesWhereNothingIsScripted(t *testing.T) {
	var mu sync.Mutex
	var grants []string
	consulted := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(grants)
	}
	server := newTestServer(t, Options{RefreshToken: "initial", TokenFault: func(call Call) *TokenStep {
		mu.Lock()
		defer mu.Unlock()
		grants = append(grants, call.Grant)
		if call.Grant == "refresh_token" {
			return &TokenStep{Status: http.StatusServiceUnavailable}
		}
		return &TokenStep{NoDuration: true}
	}})
	server.ScriptTokens(TokenStep{Status: http.StatusBadGateway})
	require.Equal(t, http.StatusBadGateway, requestToken(t, server, passwordBody).status, "a scripted step wins")
	require.EqualValues(t, 0, login(t, server).Duration)
	refresh := map[string]any{"grant_type": "refresh_token", "refresh_token": "initial"}
	require.Equal(t, http.StatusServiceUnavailable, requestToken(t, server, refresh).status)
	require.Equal(t, []string{"password", "refresh_token"}, consulted(), "not consulted for scripted requests")

	server.SetTokenFault(nil)
	require.Equal(t, http.StatusOK, requestToken(t, server, refresh).status)
	require.EqualValues(t, 300, login(t, server).Duration)
	server.SetTokenFault(func(Call) *TokenStep { return &TokenStep{Status: http.StatusGatewayTimeout} })
	require.Equal(t, http.StatusGatewayTimeout, requestToken(t, server, passwordBody).status)
	require.Equal(t, 6, server.TokenRequests())
}

func TestTokenRequestsAreCountedWithoutARecord(t *testing.T) {
	server := newTestServer(t, Options{NoRecord: true})
	server.ScriptTokens(TokenStep{Status: http.StatusServiceUnavailable})
	requestToken(t, server, passwordBody)
	login(t, server)
	require.Empty(t, server.Calls())
	require.Equal(t, 2, server.TokenRequests())
}

// tokenStatuses lists the status answered to each recorded token request.
func tokenStatuses(server *Server) []int {
	var statuses []int
	for _, call := range server.Calls() {
		if call.Op == opToken {
			statuses = append(statuses, call.Status)
		}
	}
	return statuses
}
