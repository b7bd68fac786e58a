package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// startFake runs the fake on a free loopback port with args and returns its
// base URL and a function that stops it and returns what it printed.
func startFake(t *testing.T, args ...string) (baseURL string, stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), &out, io.Discard,
			func(u string) { urls <- u })
	}()
	select {
	case baseURL = <-urls:
	case err := <-done:
		cancel()
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the fake did not start in 10s")
	}
	stopped := false
	stop = func() string {
		if !stopped {
			stopped = true
			cancel()
			require.NoError(t, <-done)
		}
		return out.String()
	}
	t.Cleanup(func() { stop() })
	return baseURL, stop
}

// postJSON posts body (nil for none) with an optional bearer token and
// decodes the JSON answer.
func postJSON(t *testing.T, url, bearer string, body any) (int, map[string]any) {
	t.Helper()
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(http.MethodPost, url, reader)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var decoded map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&decoded))
	return resp.StatusCode, decoded
}

// login gets a JWT from the fake with the default credentials.
func login(t *testing.T, baseURL string) string {
	t.Helper()
	status, token := postJSON(t, baseURL+"/api/v1/auth/tokens", "", map[string]any{
		"grant_type": "password", "username": defaultUsername, "password": defaultPassword,
	})
	require.Equal(t, http.StatusOK, status, "token answer: %v", token)
	jwt, _ := token["jwt"].(string)
	require.NotEmpty(t, jwt)
	return jwt
}

// cancelURL is the cancel action of a job of kind under baseURL.
func cancelURL(baseURL string, kind messages.Kind, id string) string {
	return baseURL + kind.Collection() + "/" + id + "/cancel"
}

func TestTheFakeGrantsATokenAndCancelsTheSampleJobs(t *testing.T) {
	baseURL, stop := startFake(t)
	jwt := login(t, baseURL)

	for _, sample := range cckmtest.SampleJobs {
		status, job := postJSON(t, cancelURL(baseURL, sample.Kind, sample.ID), jwt, nil)
		switch {
		case sample.Unknown:
			assert.Equal(t, http.StatusNotFound, status, "an unknown sample: %v", job)
		case sample.Finished:
			assert.Equal(t, http.StatusConflict, status, "a finished sample cannot be canceled: %v", job)
		default:
			require.Equal(t, http.StatusOK, status, "cancel answer: %v", job)
			assert.Equal(t, sample.ID, job["id"])
			assert.Equal(t, true, job["abort"])
			info, _ := sample.Kind.Info()
			assert.Equal(t, info.Running, job["overall_status"])
		}
	}

	status, _ := postJSON(t, cancelURL(baseURL, cckmtest.SampleFreshKind, messages.NewRequestID()), jwt, nil)
	assert.Equal(t, http.StatusNotFound, status, "without --any-job an unknown id is not found")

	out := stop()
	assert.Contains(t, out, baseURL)
	for _, job := range cckmtest.SampleJobs {
		assert.Contains(t, out, job.ID)
	}
	for _, kind := range messages.Kinds {
		assert.Contains(t, out, " "+string(kind), "every kind is named")
	}
	assert.Contains(t, out, "stopping")
}

func TestTheFakeRefusesWrongCredentials(t *testing.T) {
	baseURL, stop := startFake(t, "--username", "ops", "--password", "s3cret")
	status, _ := postJSON(t, baseURL+"/api/v1/auth/tokens", "", map[string]any{
		"grant_type": "password", "username": defaultUsername, "password": defaultPassword,
	})
	assert.Equal(t, http.StatusUnauthorized, status)
	status, _ = postJSON(t, baseURL+"/api/v1/auth/tokens", "", map[string]any{
		"grant_type": "password", "username": "ops", "password": "s3cret",
	})
	assert.Equal(t, http.StatusOK, status)
	assert.NotContains(t, stop(), "s3cret", "an operator's own password is not printed")
}

func TestAnyJobMakesAnUnknownUUIDARunningJobOfEveryKind(t *testing.T) {
	baseURL, _ := startFake(t, "--any-job", "--quiet")
	jwt := login(t, baseURL)
	for _, info := range messages.KindTable() {
		id := messages.NewRequestID()
		status, job := postJSON(t, cancelURL(baseURL, info.Kind, id), jwt, nil)
		assert.Equal(t, http.StatusOK, status, "%s: %v", info.Kind, job)
		assert.Equal(t, id, job["id"], info.Kind)
		assert.Equal(t, true, job["abort"], info.Kind)
		assert.Equal(t, info.Running, job["overall_status"], info.Kind)
	}
	for _, sample := range cckmtest.SampleJobs {
		if sample.Unknown {
			status, _ := postJSON(t, cancelURL(baseURL, sample.Kind, sample.ID), jwt, nil)
			assert.Equal(t, http.StatusNotFound, status, "the unknown sample stays unknown with --any-job")
		}
	}
}

func TestTLSPrintsTheCertificateToTrust(t *testing.T) {
	baseURL, stop := startFake(t, "--tls")
	assert.True(t, strings.HasPrefix(baseURL, "https://127.0.0.1:"), baseURL)
	assert.Contains(t, stop(), "-----BEGIN CERTIFICATE-----")
}

func TestABadCommandLineIsAnError(t *testing.T) {
	for name, args := range map[string][]string{
		"an unknown flag":          {"--nope"},
		"a stray argument":         {"extra"},
		"a zero settle time":       {"--settle-after", "0s"},
		"an address it cannot use": {"--addr", "256.0.0.1:1"},
		"a duration of no sense":   {"--settle-after", "soon"},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), args, io.Discard, io.Discard, nil)
			assert.Error(t, err)
		})
	}
	var usage bytes.Buffer
	err := run(context.Background(), []string{"--help"}, io.Discard, &usage, nil)
	assert.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, usage.String(), "-any-job")
}

// A black-box test of the built binary: it prints its URL and exits 0 on
// SIGTERM, as a container runtime expects.
func TestTheBinaryStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "cckm-fake-cm")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	cmd := exec.Command(bin, "--addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "no output")
	assert.Regexp(t, `simulated CipherTrust Manager on http://127\.0\.0\.1:\d+`, lines.Text())
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status after SIGTERM")
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}
