package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// metricsText is what the process's /metrics serves now.
func (p *process) metricsText(t *testing.T) string {
	t.Helper()
	serving := p.logLine("serving /healthz, /readyz and /metrics")
	require.NotNil(t, serving)
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", serving["addr"]))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

func TestTheBinaryHoldsCallsWhileCMAnswers503AndSaysSoOnMetricsAndInTheLog(t *testing.T) {
	t.Parallel()
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{Username: "worker", Password: "guard-password", AnyJob: true,
		Fault: func(cckmtest.Call) *cckmtest.Step { return &cckmtest.Step{Status: http.StatusServiceUnavailable} }})
	t.Cleanup(cm.Close)
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	results := subscribeResults(t, nc)

	p := startBinary(t, workerEnv(ns, cm, map[string]string{
		"CCKM_USERNAME": "worker", "CCKM_PASSWORD": "guard-password",
		"CCKM_RATE_LIMIT": "20", "CCKM_RATE_BURST": "2",
		"WORKER_RETRY_DELAY": "200ms", "WORKER_MAX_RETRY_DELAY": "1s", "CCKM_RETRY_BUDGET": "5s",
	}))
	p.waitUntilConsuming(t, js)
	configuration := p.logLine("configuration")
	require.NotNil(t, configuration)
	assert.Equal(t, 20.0, configuration["cckm_rate_limit"], "the start-up line shows the rate limit")
	assert.Equal(t, 2.0, configuration["cckm_rate_burst"])

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = js.Publish(ctx, "cckm.cancel.refresh", []byte(newUUID(t)))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(p.metricsText(t), "\ncckm_cancel_cm_held 1\n") },
		10*time.Second, 20*time.Millisecond, "/metrics shows the hold")
	cm.SetFault(nil) // CipherTrust Manager is back

	r := decodeResult(t, receiveResults(t, results, 1, 15*time.Second)[0])
	assert.Equal(t, "canceled", r.Status)
	require.Eventually(t, func() bool { return strings.Contains(p.metricsText(t), "\ncckm_cancel_cm_held 0\n") },
		5*time.Second, 20*time.Millisecond, "/metrics shows the hold is over")
	assert.Contains(t, p.metricsText(t), "\ncckm_cancel_cm_holds_total 1\n")
	require.Eventually(t, func() bool { return p.logLine("CipherTrust Manager answered the probe: calls resume") != nil },
		5*time.Second, 20*time.Millisecond, "the hold's end is logged")
	logs := p.stdout.String()
	assert.Equal(t, 1, strings.Count(logs, "holding every new call"), "the hold's start is logged once")
	assert.Equal(t, 1, strings.Count(logs, "calls resume"), "its end is logged once")
}
