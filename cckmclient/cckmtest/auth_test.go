package cckmtest

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestJobEndpointsRequireABearerToken(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(BulkJob, bulkID)
	cases := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"an unknown token", "Bearer not-issued"},
		{"another scheme", "Basic " + testStatic},
		{"a scheme without a token", "Bearer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			request, err := http.NewRequest(http.MethodPost, jobURL(server, BulkJob, bulkID, true), nil)
			require.NoError(t, err)
			if tc.header != "" {
				request.Header.Set("Authorization", tc.header)
			}
			answer, err := server.Client().Do(request)
			require.NoError(t, err)
			defer answer.Body.Close()
			require.Equal(t, http.StatusUnauthorized, answer.StatusCode)
		})
	}
	answer := getJob(t, server, BulkJob, bulkID, "")
	requireCMError(t, answer, http.StatusUnauthorized, 5, "Unauthorized: Bearer token malformed")
	job, _ := server.Job(BulkJob, bulkID)
	require.False(t, job.Abort, "an unauthorized cancel changes nothing")
}

func TestStaticTokenIsAlwaysAccepted(t *testing.T) {
	server := newTestServer(t, Options{TokenLifetime: time.Millisecond})
	server.AddJob(Refresh, refreshID)
	server.ExpireTokens()
	require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, testStatic).status)
	require.Empty(t, server.Grants())
}

func TestIssuedJWTExpiresAfterItsLifetime(t *testing.T) {
	server := newTestServer(t, Options{TokenLifetime: 300 * time.Millisecond})
	server.AddJob(Refresh, refreshID)
	token := login(t, server)
	require.EqualValues(t, 1, token.Duration)
	require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, token.JWT).status)

	var expired response
	require.Eventually(t, func() bool {
		expired = getJob(t, server, Refresh, refreshID, token.JWT)
		return expired.status == http.StatusUnauthorized
	}, 5*time.Second, 20*time.Millisecond)
	requireCMError(t, expired, http.StatusUnauthorized, 5, "")
	require.Regexp(t, `^Unauthorized: Bearer token malformed: Token is expired by [12]s$`,
		expired.object(t)["message"], "polled within a second of the expiry")

	fresh := login(t, server)
	require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, fresh.JWT).status)
}

func TestExpireTokensExpiresEveryIssuedJWT(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(BulkJob, bulkID)
	first, second := login(t, server), login(t, server)
	server.ExpireTokens()
	for _, token := range []string{first.JWT, second.JWT} {
		answer := cancelJob(t, server, BulkJob, bulkID, token)
		require.Equal(t, http.StatusUnauthorized, answer.status)
		require.Regexp(t, regexp.MustCompile(`^Unauthorized: Bearer token malformed: Token is expired by \d+s$`),
			answer.object(t)["message"])
	}
	require.Equal(t, http.StatusOK, cancelJob(t, server, BulkJob, bulkID, login(t, server).JWT).status)
}

func TestExpiredByReportsTheActualAmount(t *testing.T) {
	store := newTokenStore(Options{TokenLifetime: time.Second}.withDefaults())
	token := store.passwordGrant(testUser, TokenStep{}).JWT
	issuedExpiry := store.jwtExpiry[token]
	message := store.authorize("Bearer "+token, issuedExpiry.Add(3*time.Second+200*time.Millisecond))
	require.Equal(t, "Unauthorized: Bearer token malformed: Token is expired by 3s", message)
	require.Empty(t, store.authorize("bearer "+token, issuedExpiry.Add(-time.Nanosecond)),
		"valid until the exact expiry, scheme in any case")
	require.Contains(t, store.authorize("Bearer "+token, issuedExpiry), "expired by 1s")
}
