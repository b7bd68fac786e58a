package cckmclient_test

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
)

func TestLoginGetsTheTokenTheNextCallsUse(t *testing.T) {
	server := passwordServer(t, cckmtest.Options{})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})

	require.NoError(t, client.Login(testContext(t)))
	assert.Equal(t, 1, server.TokenRequests(), "one grant at login")

	id := newID()
	server.AddJob(cckmtest.Refresh, id)
	_, err := client.Cancel(testContext(t), cckmtest.Refresh, id)
	require.NoError(t, err)
	assert.Equal(t, 1, server.TokenRequests(), "the cancel uses the login's token")
}

func TestLoginWithTheWrongPasswordIsRefused(t *testing.T) {
	server := passwordServer(t, cckmtest.Options{})
	const wrong = "wrong-pw-Zq81-never-print"
	client := newClient(t, server, cckmclient.Config{Credentials: cckmclient.Credentials{Username: testUser, Password: wrong}})

	err := client.Login(testContext(t))
	require.Error(t, err)
	var authErr *cckmclient.AuthError
	assert.ErrorAs(t, err, &authErr)
	assert.True(t, cckmclient.IsLoginRefused(err), "a 401 from the token endpoint is a refused login: %v", err)
	assert.False(t, cckmclient.Retryable(err))
	assert.False(t, strings.Contains(err.Error(), wrong), "the error shows the password: %v", err)
}

func TestLoginToAnUnreachableCipherTrustManagerIsNotARefusal(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedURL := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	client, err := cckmclient.New(cckmclient.Config{BaseURL: closedURL, Credentials: passwordCreds, MaxAttempts: 1})
	require.NoError(t, err)

	err = client.Login(testContext(t))
	require.Error(t, err)
	assert.False(t, cckmclient.IsLoginRefused(err), "no answer is not a refusal: %v", err)
	assert.True(t, cckmclient.Retryable(err), "no answer may pass: %v", err)
}

func TestLoginWithAStaticTokenMakesNoCall(t *testing.T) {
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})

	require.NoError(t, client.Login(testContext(t)))
	assert.Empty(t, server.Calls(), "nothing to log in with")
}
