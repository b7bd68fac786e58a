package cckmclient_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// wrongPassword is a configured secret that the server refuses.
const wrongPassword = "pw-wrong-Zr81-never-print"

// mintedRefreshToken matches the refresh tokens the fake issues (48 hex
// digits), which a test cannot read from the outside.
var mintedRefreshToken = regexp.MustCompile(`[0-9a-f]{48}`)

// echoBody is a CM error body whose text repeats secret, as a careless
// server might.
func echoBody(secret string) string {
	return fmt.Sprintf(`{"code":9,"codeDesc":"NCERRInvalidParamValue: bad credential %s","message":"credential %s is not allowed here"}`,
		secret, secret)
}

func TestNoSecretAppearsInLogsOrErrors(t *testing.T) {
	t.Parallel()
	type run func(t *testing.T, ctx context.Context, server *cckmtest.Server, client *cckmclient.Client) []error
	tests := []struct {
		name   string
		server cckmtest.Options
		creds  cckmclient.Credentials
		run    run
		quiet  bool // the client logs nothing: a refused login is logged by the caller
	}{
		{
			name: "a static token, retried, refused and echoed", server: cckmtest.Options{StaticToken: testStatic}, creds: staticCreds,
			run: func(t *testing.T, ctx context.Context, server *cckmtest.Server, client *cckmclient.Client) []error {
				id := addJob(server, cckmtest.Refresh)
				server.Script(id, cckmtest.Step{Status: 503}, cckmtest.Step{Drop: true}, cckmtest.Step{},
					cckmtest.Step{Status: 401}, cckmtest.Step{Status: 400, Body: echoBody(testStatic)})
				return calls(ctx, client, id, 3)
			},
		},
		{
			name: "a password, renewed after a 401, and echoed", server: cckmtest.Options{Username: testUser, Password: testPassword},
			creds: passwordCreds,
			run: func(t *testing.T, ctx context.Context, server *cckmtest.Server, client *cckmclient.Client) []error {
				id := addJob(server, cckmtest.Refresh)
				errs := calls(ctx, client, id, 1)
				server.ExpireTokens()
				server.Script(id, cckmtest.Step{Status: 502}, cckmtest.Step{}, cckmtest.Step{Status: 403, Body: echoBody(testPassword)})
				return append(errs, calls(ctx, client, id, 2)...)
			},
		},
		{
			name: "a wrong password", server: cckmtest.Options{Username: testUser, Password: testPassword},
			creds: cckmclient.Credentials{Username: testUser, Password: wrongPassword}, quiet: true,
			run: func(t *testing.T, ctx context.Context, server *cckmtest.Server, client *cckmclient.Client) []error {
				return calls(ctx, client, newID(), 1)
			},
		},
		{
			name: "a refresh token that is renewed, then revoked", server: cckmtest.Options{RefreshToken: testRefresh},
			creds: cckmclient.Credentials{RefreshToken: testRefresh},
			run: func(t *testing.T, ctx context.Context, server *cckmtest.Server, client *cckmclient.Client) []error {
				id := addJob(server, cckmtest.BulkJob)
				errs := calls(ctx, client, id, 1)
				server.ExpireTokens()
				errs = append(errs, calls(ctx, client, id, 1)...)
				server.Script(id, cckmtest.Step{Status: 409, Body: echoBody(testRefresh)})
				errs = append(errs, calls(ctx, client, id, 1)...)
				server.RevokeRefreshTokens()
				server.ExpireTokens()
				return append(errs, calls(ctx, client, id, 1)...)
			},
		},
		{
			name:   "a revoked refresh token with the password fallback",
			server: cckmtest.Options{Username: testUser, Password: testPassword, RefreshToken: testRefresh},
			creds:  cckmclient.Credentials{RefreshToken: testRefresh, Username: testUser, Password: testPassword},
			run: func(t *testing.T, ctx context.Context, server *cckmtest.Server, client *cckmclient.Client) []error {
				id := addJob(server, cckmtest.BulkJob)
				errs := calls(ctx, client, id, 1)
				server.RevokeRefreshTokens()
				server.ExpireTokens()
				return append(errs, calls(ctx, client, id, 1)...)
			},
		},
		{
			name: "an error that echoes the JWT in use", server: cckmtest.Options{Username: testUser, Password: testPassword},
			creds: passwordCreds,
			run: func(t *testing.T, ctx context.Context, server *cckmtest.Server, client *cckmclient.Client) []error {
				id := addJob(server, cckmtest.Refresh)
				errs := calls(ctx, client, id, 1)
				jwts := issuedJWTs(server)
				require.Len(t, jwts, 1)
				server.Script(id, cckmtest.Step{Status: 403, Body: echoBody(jwts[0])})
				return append(errs, calls(ctx, client, id, 1)...)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := newServer(t, tt.server)
			logger, logs := debugLogger()
			cfg := cckmclient.Config{
				BaseURL: server.URL(), Credentials: tt.creds, Logger: logger,
				BaseBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
			}
			client, err := cckmclient.New(cfg)
			require.NoError(t, err)

			errs := tt.run(t, testContext(t), server, client)
			require.NotEmpty(t, errs, "each case makes a call fail")
			if !tt.quiet {
				assert.Contains(t, logs.String(), `"level":"debug"`, "the debug log was on")
			}

			texts := map[string]string{"log": logs.String(), "config": fmt.Sprintf("%+v", cfg)}
			for i, err := range errs {
				texts[fmt.Sprintf("error %d", i)] = err.Error()
				texts[fmt.Sprintf("error %d as %%+v", i)] = fmt.Sprintf("%+v", err)
			}
			secrets := append([]string{testPassword, wrongPassword, testStatic, testRefresh}, issuedJWTs(server)...)
			for where, text := range texts {
				for _, secret := range secrets {
					assert.NotContains(t, text, secret, "in the %s", where)
				}
				assert.NotRegexp(t, mintedRefreshToken, text, "a refresh token the server issued, in the %s", where)
			}
		})
	}
}

// calls makes n cancels of id and returns the errors.
func calls(ctx context.Context, client *cckmclient.Client, id string, n int) []error {
	var errs []error
	for range n {
		if _, err := client.Cancel(ctx, messages.KindRefresh, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func TestAnEchoedSecretIsMaskedButTheRestOfTheMessageKept(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{Username: testUser, Password: testPassword})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, cckmtest.Step{Status: http.StatusBadRequest, Body: echoBody(testPassword)})

	_, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NCERRInvalidParamValue: bad credential ****")
	assert.Contains(t, err.Error(), "credential **** is not allowed here")
	assert.NotContains(t, err.Error(), testPassword)
}

func TestPrintingAClientOrASecretUnderAnyVerbMasksIt(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: cckmclient.Credentials{Token: testStatic}})
	secret := cckmclient.Secret(testStatic)
	for _, text := range []string{
		fmt.Sprintf("%+v", client), fmt.Sprintf("%#v", client), fmt.Sprintf("%v", *client),
		fmt.Sprintf("%d", secret), fmt.Sprintf("%x", secret), fmt.Sprintf("%s", secret), fmt.Sprintf("%#v", secret),
	} {
		assert.NotContains(t, text, testStatic)
	}
}
