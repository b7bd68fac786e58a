package cckmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Credentials used by the tests.
const (
	testUser     = "admin"
	testPassword = "s3cret"
	testStatic   = "static-token"
)

// Job ids used by the tests.
const (
	refreshID = "8155fe39-570a-4132-92ca-e40b7640c7dc"
	bulkID    = "2b1c7d1e-3f4a-4b5c-8d6e-7f8091a2b3c4"
)

// newTestServer starts a server with test credentials on top of opts, closed at cleanup.
func newTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Username == "" {
		opts.Username, opts.Password = testUser, testPassword
	}
	if opts.StaticToken == "" {
		opts.StaticToken = testStatic
	}
	server := NewServer(opts)
	t.Cleanup(server.Close)
	return server
}

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// object decodes the body as a JSON object.
func (r response) object(t *testing.T) map[string]any {
	t.Helper()
	var object map[string]any
	require.NoError(t, json.Unmarshal(r.body, &object), "body %s", r.body)
	return object
}

// send makes one request with a bounded time and reads the answer.
func send(t *testing.T, client *http.Client, method, url, token string, body any) (response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var reader io.Reader
	if body != nil {
		encoded, err := json.Marshal(body)
		require.NoError(t, err)
		reader = bytes.NewReader(encoded)
	}
	request, err := http.NewRequestWithContext(ctx, method, url, reader)
	require.NoError(t, err)
	request.Header.Set("Accept", "application/json")
	if token != "" {
		request.Header.Set("Authorization", "Bearer "+token)
	}
	answer, err := client.Do(request)
	if err != nil {
		return response{}, err
	}
	defer answer.Body.Close()
	data, err := io.ReadAll(answer.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", answer.Header.Get("Content-Type"), "body %s", data)
	return response{status: answer.StatusCode, header: answer.Header, body: data}, nil
}

// mustSend is send that fails the test on a transport error.
func mustSend(t *testing.T, client *http.Client, method, url, token string, body any) response {
	t.Helper()
	answer, err := send(t, client, method, url, token, body)
	require.NoError(t, err)
	return answer
}

// jobURL is the URL of a job of kind, with "/cancel" added for a cancel.
func jobURL(server *Server, kind Kind, id string, cancel bool) string {
	url := server.URL() + kind.Collection() + "/" + id
	if cancel {
		url += "/cancel"
	}
	return url
}

// cancelJob posts a cancel of the job with token.
func cancelJob(t *testing.T, server *Server, kind Kind, id, token string) response {
	t.Helper()
	return mustSend(t, server.Client(), http.MethodPost, jobURL(server, kind, id, true), token, nil)
}

// getJob reads the job with token.
func getJob(t *testing.T, server *Server, kind Kind, id, token string) response {
	t.Helper()
	return mustSend(t, server.Client(), http.MethodGet, jobURL(server, kind, id, false), token, nil)
}

// requestToken posts a token request.
func requestToken(t *testing.T, server *Server, body any) response {
	t.Helper()
	return mustSend(t, server.Client(), http.MethodPost, server.URL()+"/api/v1/auth/tokens", "", body)
}

// login does a password grant that must succeed and returns the response.
func login(t *testing.T, server *Server) tokenResponse {
	t.Helper()
	answer := requestToken(t, server, map[string]any{
		"grant_type": "password", "username": testUser, "password": testPassword,
	})
	require.Equal(t, http.StatusOK, answer.status, "body %s", answer.body)
	var token tokenResponse
	require.NoError(t, json.Unmarshal(answer.body, &token))
	return token
}

// requireCMError checks an error answer's status, code and message.
func requireCMError(t *testing.T, answer response, status, code int, message string) {
	t.Helper()
	require.Equal(t, status, answer.status, "body %s", answer.body)
	body := answer.object(t)
	require.EqualValues(t, code, body["code"], "body %s", answer.body)
	require.Contains(t, body["codeDesc"], "NCERR")
	require.True(t, isUUID(body["requestID"].(string)), "requestID in %s", answer.body)
	if message != "" {
		require.Equal(t, message, body["message"])
	}
}
