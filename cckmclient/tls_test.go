package cckmclient_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// tlsServer serves HTTPS with a self-signed certificate.
func tlsServer(t *testing.T) *cckmtest.Server {
	t.Helper()
	return passwordServer(t, cckmtest.Options{TLS: true, StaticToken: testStatic})
}

func TestAnUntrustedCertificateIsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		creds cckmclient.Credentials
	}{
		{"on the job call with a static token", staticCreds},
		{"on the login with a password", passwordCreds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := tlsServer(t)
			client := newClient(t, server, cckmclient.Config{Credentials: tt.creds, MaxAttempts: 2})
			id := addJob(server, cckmtest.Refresh)

			resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
			require.Error(t, err)
			assert.Nil(t, resp.Job)
			assert.Zero(t, resp.HTTPStatus)
			assert.True(t, isUnreachable(err), "%T: %v", err, err)
			assert.Contains(t, err.Error(), "certificate")
			assert.False(t, cckmclient.Retryable(err), "a certificate that cannot be verified is a setting to fix, not retried")
			assert.Empty(t, server.Calls(), "no request got past the handshake")
			job, _ := server.Job(cckmtest.Refresh, id)
			assert.False(t, job.Abort)
		})
	}
}

func TestACAFileMakesTheCertificateTrusted(t *testing.T) {
	t.Parallel()
	server := tlsServer(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, writeFile(caFile, server.CACertPEM()))
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, CAFile: caFile})
	id := addJob(server, cckmtest.BulkJob)

	resp, err := client.Cancel(testContext(t), messages.KindBulkJob, id)
	require.NoError(t, err)
	assert.True(t, resp.Job.Abort)
	assert.Equal(t, map[string]int{"password": 1}, server.Grants())
}

func TestInsecureSkipVerifyWorksAndSaysSo(t *testing.T) {
	t.Parallel()
	server := tlsServer(t)
	logger, logs := debugLogger()
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, InsecureSkipVerify: true, Logger: logger})

	warning := logs.String()
	assert.Contains(t, warning, `"level":"warn"`)
	assert.Contains(t, warning, "TLS verification")
	assert.Contains(t, warning, "OFF")
	assert.Contains(t, warning, "CCKM_INSECURE_SKIP_VERIFY")

	id := addJob(server, cckmtest.Refresh)
	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.NoError(t, err)
	assert.True(t, resp.Job.Abort)
}

func TestVerifiedTLSLogsNoWarning(t *testing.T) {
	t.Parallel()
	server := tlsServer(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, writeFile(caFile, server.CACertPEM()))
	logger, logs := debugLogger()
	newClient(t, server, cckmclient.Config{Credentials: staticCreds, CAFile: caFile, Logger: logger})
	assert.NotContains(t, logs.String(), "OFF")
}

func TestBadTLSSettingsAreRefusedByNew(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, writeFile(notPEM, []byte("this is not a certificate\n")))
	validPEM := filepath.Join(dir, "ca.pem")
	require.NoError(t, writeFile(validPEM, tlsServer(t).CACertPEM()))
	tests := []struct {
		name    string
		cfg     cckmclient.Config
		wantErr []string
	}{
		{"a CA file with no PEM certificate",
			cckmclient.Config{BaseURL: "https://127.0.0.1:1", CAFile: notPEM},
			[]string{"CCKM_CA_FILE", "no PEM certificate"}},
		{"a CA file that does not exist",
			cckmclient.Config{BaseURL: "https://127.0.0.1:1", CAFile: filepath.Join(dir, "missing.pem")},
			[]string{"CCKM_CA_FILE", "no such file"}},
		{"a CA file for a plain http URL",
			cckmclient.Config{BaseURL: "http://127.0.0.1:1", CAFile: validPEM},
			[]string{"plain http", "TLS settings do not apply"}},
		{"insecure skip verify for a plain http URL",
			cckmclient.Config{BaseURL: "http://127.0.0.1:1", InsecureSkipVerify: true},
			[]string{"plain http", "TLS settings do not apply"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Credentials = staticCreds
			client, err := cckmclient.New(tt.cfg)
			require.Error(t, err)
			assert.Nil(t, client)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
			assert.False(t, errors.Is(err, cckmclient.ErrInvalidID))
			assert.False(t, strings.Contains(err.Error(), testStatic))
		})
	}
}
