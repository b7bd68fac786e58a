package cckmclient

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestDecodeJob(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		wantRaw     string
		wantAbort   bool
		wantOverall string
		wantErr     bool
	}{
		{name: "a bare object", body: `{"id":"j1","abort":true,"overall_status":"in progress","x":{"y":1}}`,
			wantRaw: `{"id":"j1","abort":true,"overall_status":"in progress","x":{"y":1}}`, wantAbort: true, wantOverall: "in progress"},
		{name: "the documentation's wrapper", body: `{"application/json": {"id":"j1","abort":true,"overall_status":"completed"}}`,
			wantRaw: `{"id":"j1","abort":true,"overall_status":"completed"}`, wantAbort: true, wantOverall: "completed"},
		{name: "abort false", body: `{"abort":false,"overall_status":"in_progress"}`,
			wantRaw: `{"abort":false,"overall_status":"in_progress"}`, wantOverall: "in_progress"},
		{name: "abort as a string is not true", body: `{"abort":"true"}`, wantRaw: `{"abort":"true"}`},
		{name: "no abort field", body: `{"id":"j1"}`, wantRaw: `{"id":"j1"}`},
		{name: "white space around", body: " \n{\"abort\":true}\n", wantRaw: `{"abort":true}`, wantAbort: true},
		{name: "line breaks inside are compacted, so a result stays one line", body: "{\n  \"abort\": true,\n  \"n\": \"a b\"\n}",
			wantRaw: `{"abort":true,"n":"a b"}`, wantAbort: true},
		{name: "a wrapper beside job fields is not unwrapped", body: `{"id":"j1","application/json":{"abort":true}}`,
			wantRaw: `{"id":"j1","application/json":{"abort":true}}`},
		{name: "an empty body", body: ``, wantErr: true},
		{name: "an array", body: `[{"abort":true}]`, wantErr: true},
		{name: "broken JSON", body: `{"abort":true`, wantErr: true},
		{name: "HTML", body: `<html>ok</html>`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job, err := DecodeJob([]byte(tt.body))
			if tt.wantErr {
				assert.Error(t, err)
				assert.Nil(t, job)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantRaw, string(job.Raw))
			assert.Equal(t, tt.wantAbort, job.Abort)
			assert.Equal(t, tt.wantOverall, job.OverallStatus)
		})
	}
}

func TestJobTerminal(t *testing.T) {
	for status, want := range map[string]bool{
		"completed": true, "COMPLETED": true, "failed": true, "Failed": true,
		"in_progress": false, "in progress": false, "": false,
	} {
		assert.Equal(t, want, (&Job{OverallStatus: status}).Terminal(), status)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	assert.Equal(t, 3*time.Second, parseRetryAfter("3", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("-1", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("soon", now))
	assert.Equal(t, 24*time.Hour, parseRetryAfter("8000000000000", now), "capped, not overflowed")
	assert.Equal(t, 90*time.Second, parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now))
	assert.Equal(t, time.Duration(0), parseRetryAfter(now.Add(-time.Minute).Format(http.TimeFormat), now))
}

func TestAPIErrorMapsStatusesToContractCodes(t *testing.T) {
	tests := []struct {
		status    int
		code      messages.ErrorCode
		retryable bool
	}{
		{400, messages.CodeClientError, false},
		{401, messages.CodeUnauthorized, false},
		{403, messages.CodeForbidden, false},
		{404, messages.CodeNotFound, false},
		{405, messages.CodeClientError, false},
		{408, messages.CodeClientError, true},
		{409, messages.CodeConflict, false},
		{422, messages.CodeClientError, false},
		{429, messages.CodeClientError, true},
		{500, messages.CodeServerError, true},
		{501, messages.CodeServerError, false},
		{502, messages.CodeServerError, true},
		{503, messages.CodeServerError, true},
		{504, messages.CodeServerError, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			err := &APIError{StatusCode: tt.status}
			assert.Equal(t, tt.code, ErrorCode(err))
			assert.Equal(t, tt.retryable, Retryable(err))
		})
	}
	assert.Equal(t, messages.CodeUnreachable, ErrorCode(&UnreachableError{Err: os.ErrDeadlineExceeded}))
	assert.True(t, Retryable(&UnreachableError{Err: os.ErrDeadlineExceeded}))
	assert.Equal(t, messages.CodeUnauthorized, ErrorCode(&AuthError{Err: &APIError{StatusCode: 401}}))
	assert.False(t, Retryable(&AuthError{Err: &APIError{StatusCode: 401}}))
	assert.Equal(t, messages.CodeUnreachable, ErrorCode(&AuthError{Err: &UnreachableError{Err: os.ErrDeadlineExceeded}}))
	assert.True(t, Retryable(&AuthError{Err: &UnreachableError{Err: os.ErrDeadlineExceeded}}))
	assert.Equal(t, messages.CodeServerError, ErrorCode(&AuthError{Err: &APIError{StatusCode: 503}}))
}

func TestAPIErrorKeepsCipherTrustManagersText(t *testing.T) {
	body := `{"code":16,"codeDesc":"NCERRResourceNotFound: Resource not found","message":"Resource not found","requestID":"r-9"}`
	err := newAPIError("cancel refresh x", 404, http.Header{}, []byte(body), time.Now())
	assert.Equal(t, 16, err.Code)
	assert.Equal(t, "r-9", err.RequestID)
	assert.Equal(t, "NCERRResourceNotFound: Resource not found", err.Detail())
	assert.Equal(t, "cancel refresh x: HTTP 404: NCERRResourceNotFound: Resource not found", err.Error())

	err = newAPIError("op", 400, http.Header{}, []byte(`{"code":9,"codeDesc":"NCERRInvalidParamValue","message":"bad id"}`), time.Now())
	assert.Equal(t, "NCERRInvalidParamValue: bad id", err.Detail())

	err = newAPIError("op", 502, http.Header{}, []byte(`<html>bad gateway</html>`), time.Now())
	assert.Equal(t, "Bad Gateway", err.Detail())

	err = newAPIError("op", 503, http.Header{"Retry-After": {"7"}}, []byte(`upstream down`), time.Now())
	assert.Equal(t, "upstream down", err.Detail())
	assert.Equal(t, 7*time.Second, err.RetryAfter)
}

func TestSecretNeverPrints(t *testing.T) {
	creds := Credentials{Token: "tok-s3cret", Username: "admin", Password: "pw-s3cret", RefreshToken: "rt-s3cret"}
	cfg := Config{BaseURL: "https://cm", Credentials: creds}
	js, err := json.Marshal(cfg.Credentials)
	require.NoError(t, err)
	for _, text := range []string{
		fmt.Sprint(creds), fmt.Sprintf("%+v", creds), fmt.Sprintf("%#v", creds), fmt.Sprintf("%v", cfg),
		fmt.Sprintf("%s", creds.Password), fmt.Sprintf("%q", creds.Token), string(js),
	} {
		for _, secret := range []string{"tok-s3cret", "pw-s3cret", "rt-s3cret"} {
			assert.NotContains(t, text, secret)
		}
		assert.Contains(t, text, "****")
	}
	assert.Equal(t, "pw-s3cret", creds.Password.Reveal())
}

func TestResolveSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "password")
	require.NoError(t, os.WriteFile(file, []byte("  pw-from-file\n"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))

	got, err := ResolveSecret("CCKM_PASSWORD", "", file)
	require.NoError(t, err)
	assert.Equal(t, "pw-from-file", got.Reveal(), "white space around a file's content is trimmed")

	got, err = ResolveSecret("CCKM_PASSWORD", "direct", "")
	require.NoError(t, err)
	assert.Equal(t, "direct", got.Reveal())

	_, err = ResolveSecret("CCKM_PASSWORD", "direct", file)
	assert.EqualError(t, err, "CCKM_PASSWORD and CCKM_PASSWORD_FILE are both set: set one")

	_, err = ResolveSecret("CCKM_TOKEN", "", filepath.Join(dir, "missing"))
	assert.ErrorContains(t, err, "CCKM_TOKEN_FILE: read ")
	assert.ErrorContains(t, err, "no such file")

	_, err = ResolveSecret("CCKM_TOKEN", "", empty)
	assert.ErrorContains(t, err, "CCKM_TOKEN_FILE: ")
	assert.ErrorContains(t, err, "is empty")
}

func TestCredentialsValidate(t *testing.T) {
	tests := []struct {
		name    string
		creds   Credentials
		wantErr string
	}{
		{name: "a static token", creds: Credentials{Token: "t"}},
		{name: "a password", creds: Credentials{Username: "u", Password: "p"}},
		{name: "a password with a domain", creds: Credentials{Username: "u", Password: "p", Domain: "d"}},
		{name: "a refresh token", creds: Credentials{RefreshToken: "r"}},
		{name: "a refresh token with a password fallback", creds: Credentials{RefreshToken: "r", Username: "u", Password: "p"}},
		{name: "nothing", creds: Credentials{}, wantErr: "CCKM_TOKEN, CCKM_USERNAME and CCKM_PASSWORD, or CCKM_REFRESH_TOKEN: one is required"},
		{name: "a user without a password", creds: Credentials{Username: "u"}, wantErr: "CCKM_PASSWORD is required with CCKM_USERNAME"},
		{name: "a password without a user", creds: Credentials{Password: "p"}, wantErr: "CCKM_USERNAME is required with CCKM_PASSWORD"},
		{name: "a token with a password", creds: Credentials{Token: "t", Username: "u", Password: "p"}, wantErr: "CCKM_TOKEN is a static token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.creds.Validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestNewChecksTheBaseURL(t *testing.T) {
	creds := Credentials{Token: "t"}
	for raw, want := range map[string]string{
		"":                                "CCKM_URL is required",
		"cm.example.com":                  "is not an http(s) URL",
		"ftp://cm.example.com":            "is not an http(s) URL",
		"https://admin:pw@cm.example.com": "must not carry credentials",
		"https://cm.example.com/?a=b":     "must not have a query",
	} {
		_, err := New(Config{BaseURL: raw, Credentials: creds})
		assert.ErrorContains(t, err, want, raw)
		if err != nil {
			assert.NotContains(t, err.Error(), "pw@")
		}
	}
	_, err := New(Config{BaseURL: "https://cm.example.com/", Credentials: creds})
	assert.NoError(t, err)
}

func TestJWTExpiry(t *testing.T) {
	// {"alg":"HS256","typ":"JWT"} . {"exp":1700000000}
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3MDAwMDAwMDB9.sig"
	assert.Equal(t, time.Unix(1700000000, 0), jwtExpiry(jwt))
	assert.True(t, jwtExpiry("not-a-jwt").IsZero())
	assert.True(t, jwtExpiry("a.b.c").IsZero())
}
