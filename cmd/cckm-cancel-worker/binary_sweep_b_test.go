package main

// Black-box checks of the binary's settings as an acceptance tester would
// make them: every file a NATS setting names is read at start, and a bad
// one (or an HTTP_ADDR that cannot be listened on) stops the process with
// exit status 2 and one line naming it; the OpenTelemetry variables are
// flags too; dev mode honours WORKER_MODE.

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// credsContent has the shape of a NATS credentials file, pasted where its
// name belongs.
const credsContent = "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n------END NATS USER JWT------\n\n" +
	"-----BEGIN USER NKEY SEED-----\n" + nkeySeedExample + "\n------END USER NKEY SEED------\n"

func TestABadNATSFileSettingExitsTwoWithOneLineNamingIt(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	notPEM := writeFile(t, "not.pem", "this is no certificate\n")
	// NATS is never reached: the files are checked before any connection.
	valid := map[string]string{
		"NATS_URL": "nats://127.0.0.1:1", "CCKM_URL": "http://127.0.0.1:1",
		"CCKM_TOKEN": "t", "HTTP_ADDR": "127.0.0.1:0",
	}
	for _, tc := range []struct {
		name    string
		more    map[string]string
		setting string
	}{
		{"NATS_CREDS naming a missing file", map[string]string{"NATS_CREDS": missing}, "NATS_CREDS"},
		{"NATS_CREDS naming a file without credentials", map[string]string{"NATS_CREDS": notPEM}, "NATS_CREDS"},
		{"NATS_NKEY naming a missing file", map[string]string{"NATS_NKEY": missing}, "NATS_NKEY"},
		{"NATS_NKEY naming a file without a seed", map[string]string{"NATS_NKEY": notPEM}, "NATS_NKEY"},
		{"NATS_CA_FILE naming a missing file", map[string]string{"NATS_CA_FILE": missing}, "NATS_CA_FILE"},
		{"NATS_CA_FILE naming a file without a certificate", map[string]string{"NATS_CA_FILE": notPEM}, "NATS_CA_FILE"},
		{"NATS_CREDS holding the credentials themselves", map[string]string{"NATS_CREDS": credsContent}, "NATS_CREDS"},
		{"HTTP_ADDR with a port past 65535", map[string]string{"HTTP_ADDR": ":99999"}, "HTTP_ADDR"},
		{"NATS_CERT_FILE and NATS_KEY_FILE naming missing files", map[string]string{"NATS_CERT_FILE": missing, "NATS_KEY_FILE": missing}, "NATS_CERT_FILE"},
	} {
		t.Run(tc.name+" exits 2 with one line naming it", func(t *testing.T) {
			t.Parallel()
			env := maps.Clone(valid)
			maps.Copy(env, tc.more)
			p := startBinary(t, env)
			assert.Equal(t, 2, p.exitCode(t, 10*time.Second))
			assert.Empty(t, p.stdout.String(), "stdout")
			stderr := p.stderr.String()
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "stderr is one line: %q", stderr)
			assert.Contains(t, stderr, tc.setting)
			assert.NotContains(t, stderr, "SUAM", "stderr quotes a seed")
		})
	}
}

func TestGoodNATSFilesPassTheStartCheck(t *testing.T) {
	cm := cckmtest.NewServer(cckmtest.Options{TLS: true})
	pem := string(cm.CACertPEM())
	cm.Close()
	cfg := config{
		NATSNKey:   writeFile(t, "user.nk", nkeySeedExample+"\n"),
		NATSCAFile: writeFile(t, "ca.pem", pem),
	}
	assert.NoError(t, checkNATSFiles(cfg))
	cfg.Dev = true
	cfg.NATSCAFile = filepath.Join(t.TempDir(), "missing")
	assert.NoError(t, checkNATSFiles(cfg), "dev mode does not use the NATS files")
}

// The OpenTelemetry variables are flags too: --otel-exporter-otlp-endpoint
// turns tracing on as OTEL_EXPORTER_OTLP_ENDPOINT does, and
// --otel-service-name wins over OTEL_SERVICE_NAME.
func TestTheOpenTelemetryVariablesAreFlagsOfTheSameMeaning(t *testing.T) {
	t.Parallel()
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{StaticToken: "cm-token"})
	t.Cleanup(cm.Close)
	id := newUUID(t)
	cm.AddJob(cckmtest.Refresh, id)
	receiver := newOTLPReceiver(t)
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	results := subscribeResults(t, nc)

	p := startBinary(t, workerEnv(ns, cm, map[string]string{"CCKM_TOKEN": "cm-token", "OTEL_SERVICE_NAME": "from-the-variable"}),
		"--otel-exporter-otlp-endpoint="+receiver.URL, "--otel-service-name=from-the-flag",
		"--otel-bsp-schedule-delay=50") // milliseconds: spans arrive at once
	p.waitUntilConsuming(t, js)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.Publish(ctx, "cckm.cancel.refresh", []byte(id))
	require.NoError(t, err)
	got := decodeResult(t, receiveResults(t, results, 1, 15*time.Second)[0])
	require.Equal(t, "canceled", got.Status)

	require.Eventually(t, func() bool {
		spans, _ := receiver.received()
		return len(spans) > 0
	}, 15*time.Second, 20*time.Millisecond, "spans exported to the endpoint the flag names")
	_, services := receiver.received()
	for _, service := range services {
		assert.Equal(t, "from-the-flag", service, "service.name: the flag wins over its variable")
	}
}

func TestABadOpenTelemetryFlagExitsTwoWithOneLineNamingIt(t *testing.T) {
	t.Parallel()
	p := startBinary(t, map[string]string{
		"NATS_URL": "nats://127.0.0.1:1", "CCKM_URL": "http://127.0.0.1:1", "CCKM_TOKEN": "t", "HTTP_ADDR": "127.0.0.1:0",
	}, "--otel-exporter-otlp-endpoint=http://127.0.0.1:1", "--otel-exporter-otlp-protocol=grpc")
	assert.Equal(t, 2, p.exitCode(t, 10*time.Second))
	assert.Empty(t, p.stdout.String(), "stdout")
	stderr := p.stderr.String()
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "stderr is one line: %q", stderr)
	assert.Contains(t, stderr, "OTEL_EXPORTER_OTLP_PROTOCOL")
}

// WORKER_* still applies in dev mode: with WORKER_MODE=core, `nats req` on
// a request subject is answered with the result, and no stream holds the
// request subjects.
func TestDevModeInCoreModeAnswersNATSRequest(t *testing.T) {
	t.Parallel()
	httpAddr := freeAddr(t)
	p := startBinary(t, map[string]string{"HTTP_ADDR": httpAddr, "DEV_NATS_PORT": "0", "WORKER_MODE": "core"}, "--dev")
	awaitReady(t, httpAddr)
	var natsURL string
	require.Eventually(t, func() bool {
		line, _ := lineWith(p.stdout.String(), "NATS (JetStream on):")
		_, natsURL, _ = strings.Cut(line, "NATS (JetStream on):")
		natsURL = strings.TrimSpace(natsURL)
		return natsURL != ""
	}, 5*time.Second, 20*time.Millisecond, "the banner names the NATS URL")
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()

	id := newUUID(t)
	reply, err := nc.Request("cckm.cancel.aws-sync", []byte(id), 10*time.Second)
	require.NoError(t, err, "nats req is answered")
	var got struct {
		Kind, ID, Status string
		Abort            bool
		HTTPStatus       int `json:"http_status"`
	}
	require.NoError(t, json.Unmarshal(reply.Data, &got), "%s", reply.Data)
	assert.Equal(t, "aws-sync", got.Kind)
	assert.Equal(t, id, got.ID)
	assert.Equal(t, "canceled", got.Status, "%s", reply.Data)
	assert.True(t, got.Abort)
	assert.Equal(t, http.StatusOK, got.HTTPStatus)

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = js.StreamNameBySubject(ctx, "cckm.cancel.aws-sync")
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound, "a core-mode dev worker made a stream on the request subjects")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.exitCode(t, 30*time.Second))
}

// NATS_URL is a comma-separated list (the first server down here, white
// space after the comma), and CCKM_URL a base URL that may end in a slash.
func TestNATSURLTakesSeveralServersAndCCKMURLATrailingSlash(t *testing.T) {
	t.Parallel()
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{StaticToken: "cm-token"})
	t.Cleanup(cm.Close)
	down := freeAddr(t) // nothing listens there
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	results := subscribeResults(t, nc)

	p := startBinary(t, workerEnv(ns, cm, map[string]string{
		"CCKM_TOKEN": "cm-token",
		"NATS_URL":   "nats://" + down + ", " + ns.ClientURL(),
		"CCKM_URL":   cm.URL() + "/",
	}))
	p.waitUntilConsuming(t, js)

	id := newUUID(t)
	cm.AddJob(messages.Kind("aws-sync"), id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.Publish(ctx, "cckm.cancel.aws-sync", []byte(" "+strings.ToUpper(id)+"\n"))
	require.NoError(t, err)
	got := decodeResult(t, receiveResults(t, results, 1, 15*time.Second)[0])
	assert.Equal(t, "canceled", got.Status)
	assert.Equal(t, http.StatusOK, got.HTTPStatus)
	for _, call := range cm.Calls() {
		assert.False(t, strings.Contains(call.Path, "//"), "a call to %s", call.Path)
	}
}

func TestMoreBadSettingsAreErrorsNamingThem(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   envMap
		args  []string
		names string
	}{
		{"CCKM_URL without a host", minimalEnv.with(envMap{"CCKM_URL": "https://"}), nil, "CCKM_URL"},
		{"CCKM_URL without a scheme", minimalEnv.with(envMap{"CCKM_URL": "cm.example.com"}), nil, "CCKM_URL"},
		{"an empty --nats-url", minimalEnv, []string{"--nats-url="}, "NATS_URL"},
		{"an empty --cckm-url", minimalEnv, []string{"--cckm-url="}, "CCKM_URL"},
		{"WORKER_MAX_DELIVERIES=0", minimalEnv.with(envMap{"WORKER_MAX_DELIVERIES": "0"}), nil, "WORKER_MAX_DELIVERIES"},
		{"CCKM_MAX_ATTEMPTS=0", minimalEnv.with(envMap{"CCKM_MAX_ATTEMPTS": "0"}), nil, "CCKM_MAX_ATTEMPTS"},
		{"WORKER_FOLLOW_TIMEOUT=-1s", minimalEnv.with(envMap{"WORKER_FOLLOW_TIMEOUT": "-1s"}), nil, "WORKER_FOLLOW_TIMEOUT"},
		{"WORKER_FOLLOW=yes", minimalEnv.with(envMap{"WORKER_FOLLOW": "yes"}), nil, "WORKER_FOLLOW"},
		{"NATS_URL with an empty server in its list", minimalEnv.with(envMap{"NATS_URL": "nats://a:4222,,nats://b:4222"}), nil, "NATS_URL"},
		{"WORKER_ACK_WAIT=0", minimalEnv.with(envMap{"WORKER_ACK_WAIT": "0"}), nil, "WORKER_ACK_WAIT"},
		{"WORKER_SHUTDOWN_TIMEOUT=later", minimalEnv.with(envMap{"WORKER_SHUTDOWN_TIMEOUT": "later"}), nil, "WORKER_SHUTDOWN_TIMEOUT"},
		{"CCKM_TOKEN with CCKM_USERNAME and CCKM_PASSWORD", minimalEnv.with(envMap{"CCKM_USERNAME": "u", "CCKM_PASSWORD": "p"}), nil, "CCKM_TOKEN"},
		{"CCKM_INSECURE_SKIP_VERIFY=maybe", minimalEnv.with(envMap{"CCKM_INSECURE_SKIP_VERIFY": "maybe"}), nil, "CCKM_INSECURE_SKIP_VERIFY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.env, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.names)
			assert.NotContains(t, err.Error(), "\n", "the error is one line")
		})
	}
}
