package cckmclient

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestRetryableIsTheStatusesWorthTryingAgain(t *testing.T) {
	for status, retryable := range map[int]bool{
		400: false, 401: false, 403: false, 404: false, 405: false, 408: true, 409: false,
		422: false, 429: true, 500: true, 501: false, 502: true, 503: true, 504: true,
	} {
		assert.Equal(t, retryable, Retryable(&APIError{StatusCode: status}), "%d", status)
	}
	assert.True(t, Retryable(&UnreachableError{Err: os.ErrDeadlineExceeded}))
	assert.False(t, Retryable(&AuthError{Err: &APIError{StatusCode: 401}}))
	assert.True(t, Retryable(&AuthError{Err: &UnreachableError{Err: os.ErrDeadlineExceeded}}))
	assert.True(t, Retryable(&AuthError{Err: &APIError{StatusCode: 503}}))
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

func TestReadJWTTimes(t *testing.T) {
	claims := func(payload string) string {
		return "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
	}
	// {"alg":"HS256","typ":"JWT"} . {"exp":1700000000}
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3MDAwMDAwMDB9.sig"
	assert.Equal(t, jwtTimes{expiresAt: time.Unix(1700000000, 0)}, readJWTTimes(jwt))
	assert.Equal(t, jwtTimes{issuedAt: time.Unix(1700000000, 0), expiresAt: time.Unix(1700000300, 500000000)},
		readJWTTimes(claims(`{"iat":1700000000,"exp":1700000300.5}`)))
	assert.Equal(t, jwtTimes{}, readJWTTimes("not-a-jwt"))
	assert.Equal(t, jwtTimes{}, readJWTTimes("a.b.c"))
	assert.Equal(t, jwtTimes{}, readJWTTimes(claims(`{"iat":-5,"exp":"soon"}`)))
	for _, huge := range []string{"1e12", "1e300", "1e400", "9223372036854775807000"} {
		times := readJWTTimes(claims(`{"exp":` + huge + `}`))
		assert.Equal(t, time.Unix(maxClaimSeconds, 0), times.expiresAt, "exp %s is capped, not overflowed", huge)
	}
}

func TestTokenLifetime(t *testing.T) {
	sentAt := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	at := func(offset time.Duration) time.Time { return sentAt.Add(offset) }
	hourBehind := -time.Hour
	tests := []struct {
		name     string
		duration int64
		claims   jwtTimes
		want     time.Duration
	}{
		{"duration alone", 300, jwtTimes{}, 300 * time.Second},
		{"exp − iat when shorter than duration", 300, jwtTimes{at(0), at(120 * time.Second)}, 120 * time.Second},
		{"duration when shorter than exp − iat", 60, jwtTimes{at(0), at(300 * time.Second)}, 60 * time.Second},
		{"a clock an hour behind changes nothing: exp − iat is relative",
			300, jwtTimes{at(hourBehind), at(hourBehind + 300*time.Second)}, 300 * time.Second},
		{"without iat, a positive duration wins over an exp in the past",
			300, jwtTimes{expiresAt: at(hourBehind)}, 300 * time.Second},
		{"exp alone is compared with our clock", 0, jwtTimes{expiresAt: at(90 * time.Second)}, 90 * time.Second},
		{"exp alone in the past says expired", -5, jwtTimes{expiresAt: at(hourBehind)}, hourBehind},
		{"exp before iat says expired", 300, jwtTimes{at(0), at(-time.Second)}, -time.Second},
		{"nothing at all: the documented 300 s", 0, jwtTimes{}, defaultTokenLifetime},
		{"a negative duration says nothing", -300, jwtTimes{}, defaultTokenLifetime},
		{"a huge duration is capped, not overflowed", 1e12, jwtTimes{}, maxTokenLifetime},
		{"the largest duration is capped", math.MaxInt64, jwtTimes{}, maxTokenLifetime},
		{"huge claims are capped", 0, jwtTimes{time.Unix(1, 0), time.Unix(maxClaimSeconds, 0)}, maxTokenLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tokenLifetime(tt.duration, tt.claims, sentAt))
		})
	}
}

func TestDurationSecondsIsLenient(t *testing.T) {
	for raw, want := range map[string]int64{
		"300": 300, "300.9": 300, "0": 0, "-1": 0, "0.5": 0, "": 0, "x": 0,
		"1e12": int64(maxTokenLifetime / time.Second), "1e400": int64(maxTokenLifetime / time.Second),
	} {
		assert.Equal(t, want, durationSeconds(json.Number(raw)), raw)
	}
}
