package cckmclient_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestEachCredentialModeCancelsAndLogsInOnlyOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		server     cckmtest.Options
		creds      func(t *testing.T) cckmclient.Credentials
		wantGrants map[string]int
	}{
		{
			name:       "a static token is sent as is and never logs in",
			server:     cckmtest.Options{StaticToken: testStatic},
			creds:      func(*testing.T) cckmclient.Credentials { return staticCreds },
			wantGrants: map[string]int{},
		},
		{
			name:   "a static token read from CCKM_TOKEN_FILE",
			server: cckmtest.Options{StaticToken: testStatic},
			creds: func(t *testing.T) cckmclient.Credentials {
				return cckmclient.Credentials{Token: resolve(t, "CCKM_TOKEN", writeSecretFile(t, "token", testStatic))}
			},
			wantGrants: map[string]int{},
		},
		{
			name:       "a password logs in once",
			server:     cckmtest.Options{Username: testUser, Password: testPassword},
			creds:      func(*testing.T) cckmclient.Credentials { return passwordCreds },
			wantGrants: map[string]int{"password": 1},
		},
		{
			name:   "a password with a domain logs in once to that domain",
			server: cckmtest.Options{Username: testUser, Password: testPassword, Domain: testDomain},
			creds: func(*testing.T) cckmclient.Credentials {
				return cckmclient.Credentials{Username: testUser, Password: testPassword, Domain: testDomain}
			},
			wantGrants: map[string]int{"password": 1},
		},
		{
			name:   "a password read from CCKM_PASSWORD_FILE",
			server: cckmtest.Options{Username: testUser, Password: testPassword},
			creds: func(t *testing.T) cckmclient.Credentials {
				password := resolve(t, "CCKM_PASSWORD", writeSecretFile(t, "password", testPassword))
				return cckmclient.Credentials{Username: testUser, Password: password}
			},
			wantGrants: map[string]int{"password": 1},
		},
		{
			name:       "a refresh token is exchanged once",
			server:     cckmtest.Options{RefreshToken: testRefresh},
			creds:      func(*testing.T) cckmclient.Credentials { return cckmclient.Credentials{RefreshToken: testRefresh} },
			wantGrants: map[string]int{"refresh_token": 1},
		},
		{
			name:   "a refresh token read from CCKM_REFRESH_TOKEN_FILE",
			server: cckmtest.Options{RefreshToken: testRefresh},
			creds: func(t *testing.T) cckmclient.Credentials {
				return cckmclient.Credentials{RefreshToken: resolve(t, "CCKM_REFRESH_TOKEN", writeSecretFile(t, "refresh", testRefresh))}
			},
			wantGrants: map[string]int{"refresh_token": 1},
		},
		{
			name:   "an unknown refresh token falls back to the password",
			server: cckmtest.Options{Username: testUser, Password: testPassword},
			creds: func(*testing.T) cckmclient.Credentials {
				return cckmclient.Credentials{RefreshToken: testRefresh, Username: testUser, Password: testPassword}
			},
			wantGrants: map[string]int{"password": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := newServer(t, tt.server)
			client := newClient(t, server, cckmclient.Config{Credentials: tt.creds(t)})
			ctx := testContext(t)
			refreshID, bulkID := addJob(server, cckmtest.Refresh), addJob(server, cckmtest.BulkJob)

			for range 3 {
				resp, err := client.Cancel(ctx, messages.KindRefresh, refreshID)
				require.NoError(t, err)
				assert.True(t, resp.Job.Abort)
				resp, err = client.Cancel(ctx, messages.KindBulkJob, bulkID)
				require.NoError(t, err)
				assert.True(t, resp.Job.Abort)
				_, err = client.Get(ctx, messages.KindRefresh, refreshID)
				require.NoError(t, err)
			}

			assert.Equal(t, tt.wantGrants, server.Grants(), "never log in per call")
			for _, call := range append(callsOf(server, "cancel"), callsOf(server, "get")...) {
				assert.Equal(t, http.StatusOK, call.Status, "%s %s", call.Method, call.Path)
			}
			if tt.server.StaticToken != "" {
				assert.Equal(t, []string{testStatic}, issuedJWTs(server), "the static token is sent as is")
			}
		})
	}
}

func TestARevokedRefreshTokenFallsBackToThePasswordAndItsNewRefreshToken(t *testing.T) {
	t.Parallel()
	for _, fromFiles := range []bool{false, true} {
		name := "given directly"
		if fromFiles {
			name = "read from _FILE variables"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			creds := cckmclient.Credentials{RefreshToken: testRefresh, Username: testUser, Password: testPassword}
			if fromFiles {
				creds.RefreshToken = resolve(t, "CCKM_REFRESH_TOKEN", writeSecretFile(t, "refresh", testRefresh))
				creds.Password = resolve(t, "CCKM_PASSWORD", writeSecretFile(t, "password", testPassword))
			}
			server := passwordServer(t, cckmtest.Options{})
			client := newClient(t, server, cckmclient.Config{Credentials: creds})
			ctx := testContext(t)
			id := addJob(server, cckmtest.Refresh)

			_, err := client.Cancel(ctx, messages.KindRefresh, id)
			require.NoError(t, err)
			require.Equal(t, map[string]int{"refresh_token": 1}, server.Grants())

			server.RevokeRefreshTokens()
			server.ExpireTokens()
			resp, err := client.Get(ctx, messages.KindRefresh, id)
			require.NoError(t, err)
			assert.Equal(t, 2, resp.Attempts, "the 401 is repeated once after the fallback login")
			assert.Equal(t, map[string]int{"refresh_token": 1, "password": 1}, server.Grants())

			// The password grant's own refresh token serves the next renewal.
			server.ExpireTokens()
			resp, err = client.Get(ctx, messages.KindRefresh, id)
			require.NoError(t, err)
			assert.Equal(t, 2, resp.Attempts)
			assert.Equal(t, map[string]int{"refresh_token": 2, "password": 1}, server.Grants())
		})
	}
}

func TestA401RenewsTheTokenOnceAndRepeatsTheCall(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})
	ctx := testContext(t)
	id := addJob(server, cckmtest.Refresh)

	resp, err := client.Cancel(ctx, messages.KindRefresh, id)
	require.NoError(t, err)
	require.Equal(t, 1, resp.Attempts)

	server.ExpireTokens()
	resp, err = client.Cancel(ctx, messages.KindRefresh, id)
	require.NoError(t, err)
	assert.Equal(t, 2, resp.Attempts)
	assert.Equal(t, http.StatusOK, resp.HTTPStatus)
	assert.True(t, resp.Job.Abort)
	assert.Equal(t, map[string]int{"password": 1, "refresh_token": 1}, server.Grants(),
		"one renewal, with the refresh token the login returned")
	assert.Equal(t, []int{200, 401, 200}, statuses(server.CallsFor(id)))
}

func TestA401AfterTheRenewalIsFinal(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})
	ctx := testContext(t)
	id := addJob(server, cckmtest.BulkJob)
	_, err := client.Get(ctx, messages.KindBulkJob, id)
	require.NoError(t, err)

	server.Script(id, cckmtest.Step{Status: http.StatusUnauthorized}, cckmtest.Step{Status: http.StatusUnauthorized})
	resp, err := client.Cancel(ctx, messages.KindBulkJob, id)
	require.Error(t, err)
	assert.Equal(t, 401, statusOf(err))
	assert.False(t, cckmclient.Retryable(err))
	assert.Equal(t, 2, resp.Attempts)
	assert.Equal(t, http.StatusUnauthorized, resp.HTTPStatus)
	assert.Nil(t, resp.Job)
	var apiErr *cckmclient.APIError
	require.True(t, errors.As(err, &apiErr), "%T: %v", err, err)
	assert.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
	assert.Equal(t, map[string]int{"password": 1, "refresh_token": 1}, server.Grants(), "exactly one renewal")
	assert.Equal(t, []int{200, 401, 401}, statuses(server.CallsFor(id)))
}

func TestA401WithAStaticTokenIsFinalAtOnce(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, cckmtest.Step{Status: http.StatusUnauthorized})

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.Error(t, err)
	assert.Equal(t, 401, statusOf(err))
	assert.Equal(t, 1, resp.Attempts)
	assert.Equal(t, http.StatusUnauthorized, resp.HTTPStatus)
	assert.Empty(t, server.Grants())
	assert.Empty(t, callsOf(server, "token"), "a static token is never renewed")
}

func TestARefusedLoginIsUnauthorizedAndNotRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		server cckmtest.Options
		creds  cckmclient.Credentials
	}{
		{"a wrong password", cckmtest.Options{Username: testUser, Password: testPassword},
			cckmclient.Credentials{Username: testUser, Password: "pw-wrong-Zr81-never-print"}},
		{"a wrong domain", cckmtest.Options{Username: testUser, Password: testPassword, Domain: testDomain},
			cckmclient.Credentials{Username: testUser, Password: testPassword, Domain: "other"}},
		{"an unknown refresh token and no password", cckmtest.Options{RefreshToken: "another-one"},
			cckmclient.Credentials{RefreshToken: testRefresh}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := newServer(t, tt.server)
			client := newClient(t, server, cckmclient.Config{Credentials: tt.creds})

			resp, err := client.Cancel(testContext(t), messages.KindRefresh, newID())
			require.Error(t, err)
			var authErr *cckmclient.AuthError
			assert.True(t, errors.As(err, &authErr), "%T: %v", err, err)
			assert.False(t, cckmclient.Retryable(err))
			assert.Zero(t, resp.Attempts, "no job call without a token")
			assert.Len(t, callsOf(server, "token"), 1, "a refused login is not retried")
			assert.Empty(t, callsOf(server, "cancel"))
			assert.True(t, strings.HasPrefix(err.Error(), "get a token: "), err.Error())
		})
	}
}

// The configured refresh token is used without rotation, so a restarted
// worker, or a second instance with the same secret, can still log in.
func TestTheConfiguredRefreshTokenOutlivesItsFirstUse(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{RefreshToken: testRefresh, TokenLifetime: time.Minute})
	for i := range 3 {
		client := newClient(t, server, cckmclient.Config{Credentials: cckmclient.Credentials{RefreshToken: testRefresh}})
		_, err := client.Cancel(testContext(t), messages.KindRefresh, addJob(server, cckmtest.Refresh))
		require.NoError(t, err, "client %d", i+1)
	}
	assert.Equal(t, 3, server.Grants()["refresh_token"])
}

// When CipherTrust Manager cannot be reached, the refresh grant's failure
// is not a reason to log in with the password (which would fail the same
// way, or mint another refresh token).
func TestAnUnreachableTokenEndpointDoesNotFallBackToThePassword(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{RefreshToken: testRefresh, Username: testUser, Password: testPassword})
	url := server.URL()
	server.Close()
	logger, logs := debugLogger()
	client, err := cckmclient.New(cckmclient.Config{BaseURL: url, Logger: logger, MaxAttempts: 1,
		Credentials: cckmclient.Credentials{RefreshToken: testRefresh, Username: testUser, Password: testPassword}})
	require.NoError(t, err)
	_, err = client.Cancel(testContext(t), messages.KindRefresh, newID())
	require.Error(t, err)
	assert.True(t, isUnreachable(err), "%T: %v", err, err)
	assert.NotContains(t, logs.String(), "logging in with the password")
}
