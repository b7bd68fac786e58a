package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// seriesValue returns the value of the series of family name whose labels
// are exactly labels (a counter's or gauge's value, a histogram's sample
// count), and whether the series exists.
func seriesValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
		for _, metric := range family.GetMetric() {
			if !labelsAre(metric, labels) {
				continue
			}
			switch {
			case metric.GetCounter() != nil:
				return metric.GetCounter().GetValue(), true
			case metric.GetGauge() != nil:
				return metric.GetGauge().GetValue(), true
			case metric.GetHistogram() != nil:
				return float64(metric.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func labelsAre(metric *dto.Metric, labels map[string]string) bool {
	if len(metric.GetLabel()) != len(labels) {
		return false
	}
	for _, pair := range metric.GetLabel() {
		if value, ok := labels[pair.GetName()]; !ok || value != pair.GetValue() {
			return false
		}
	}
	return true
}

// requireSeries fails unless the series exists, and returns its value.
func requireSeries(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	value, ok := seriesValue(t, reg, name, labels)
	require.True(t, ok, "no series %s%v", name, labels)
	return value
}

// requireSeriesReaches waits until the series has value want: a result is
// counted just after it is published, a dead letter after the result.
func requireSeriesReaches(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string, want float64) {
	t.Helper()
	require.Eventually(t, func() bool {
		value, ok := seriesValue(t, reg, name, labels)
		return ok && value == want
	}, 10*time.Second, 5*time.Millisecond, "%s%v never reached %v", name, labels, want)
}

// An alert on a counter that appears only with its first increment never
// fires on it: every series an alert or the dashboard names is there, at
// zero, before anything happened.
func TestEverySeriesExistsAtZeroFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	zero := func(name string, labels map[string]string) {
		t.Helper()
		assert.Zero(t, requireSeries(t, reg, name, labels), "%s%v", name, labels)
	}
	for _, kind := range messages.Kinds {
		k := string(kind)
		zero("cckm_cancel_results_total", map[string]string{"kind": k, "status": "canceled", "code": ""})
		zero("cckm_cancel_results_total", map[string]string{"kind": k, "status": "rejected", "code": "invalid_request"})
		for _, code := range []string{"not_found", "unauthorized", "forbidden", "conflict", "client_error",
			"server_error", "unreachable", "abort_not_set", "invalid_request"} {
			zero("cckm_cancel_results_total", map[string]string{"kind": k, "status": "failed", "code": code})
		}
		for _, op := range []string{"cancel", "get"} {
			zero("cckm_cancel_cm_call_duration_seconds", map[string]string{"op": op, "kind": k})
			for _, status := range []string{"none", "200", "401", "404", "409", "429", "500", "502", "503", "504"} {
				zero("cckm_cancel_cm_attempts_total", map[string]string{"op": op, "kind": k, "http_status": status})
			}
		}
		zero("cckm_cancel_cm_retries_total", map[string]string{"kind": k})
		zero("cckm_cancel_redeliveries_total", map[string]string{"kind": k})
		zero("cckm_cancel_dead_letters_total", map[string]string{"kind": k})
	}
	cfg := testConfig(ModeJetStream)
	for _, out := range newOutputs(&cfg, nil, nil, zerolog.Nop(), nil, nil).all() {
		zero("cckm_cancel_publish_failures_total", map[string]string{"what": out.what})
	}
	for _, grant := range []string{"password", "refresh_token"} {
		for _, outcome := range []string{"ok", "refused", "unreachable", "failed"} {
			zero("cckm_cancel_cm_token_grants_total", map[string]string{"grant": grant, "outcome": outcome})
		}
	}
	zero("cckm_cancel_in_flight", map[string]string{})
	zero("cckm_cancel_cm_held", map[string]string{})
	zero("cckm_cancel_cm_holds_total", map[string]string{})
}

// No label name means two things: status is a result's status, the HTTP
// status of an attempt is http_status, and an attempt without an answer
// says so in words.
func TestAnAttemptIsCountedByItsHTTPStatusAndTimedByOpAndKind(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.ObserveCall("cancel", "azure-bulkjob", 0, 30*time.Millisecond, false)
	m.ObserveCall("cancel", "azure-bulkjob", 503, 10*time.Millisecond, true)
	m.ObserveCall("get", "azure-bulkjob", 418, 10*time.Millisecond, false)

	labels := func(op, status string) map[string]string {
		return map[string]string{"op": op, "kind": "azure-bulkjob", "http_status": status}
	}
	assert.Equal(t, 1.0, requireSeries(t, reg, "cckm_cancel_cm_attempts_total", labels("cancel", "none")))
	assert.Equal(t, 1.0, requireSeries(t, reg, "cckm_cancel_cm_attempts_total", labels("cancel", "503")))
	assert.Equal(t, 1.0, requireSeries(t, reg, "cckm_cancel_cm_attempts_total", labels("get", "418")), "an uncommon status appears when it comes")
	_, zeroStatus := seriesValue(t, reg, "cckm_cancel_cm_attempts_total", labels("cancel", "0"))
	assert.False(t, zeroStatus, `no answer is http_status="none", not "0"`)
	assert.Equal(t, 2.0, requireSeries(t, reg, "cckm_cancel_cm_call_duration_seconds", map[string]string{"op": "cancel", "kind": "azure-bulkjob"}))
	assert.Equal(t, 1.0, requireSeries(t, reg, "cckm_cancel_cm_retries_total", map[string]string{"kind": "azure-bulkjob"}))
}

func TestATokenGrantIsCountedByWhatBecameOfIt(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"a token came", "ok", nil},
		{"credentials refused", "refused", &cckmclient.APIError{Op: "token password grant", StatusCode: 401}},
		{"a bad request", "refused", &cckmclient.APIError{Op: "token password grant", StatusCode: 400}},
		{"too many requests: not a refusal", "failed", &cckmclient.APIError{Op: "token password grant", StatusCode: 429}},
		{"no answer", "unreachable", &cckmclient.UnreachableError{Op: "token password grant", Err: errors.New("connection refused")}},
		{"a 5xx", "failed", &cckmclient.APIError{Op: "token password grant", StatusCode: 503}},
		{"a 2xx without a token", "failed", &cckmclient.APIError{Op: "token password grant", StatusCode: 200}},
		{"anything else", "failed", context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			NewMetrics(reg).ObserveTokenGrant("password", tc.err)
			assert.Equal(t, 1.0, requireSeries(t, reg, "cckm_cancel_cm_token_grants_total", map[string]string{"grant": "password", "outcome": tc.want}))
		})
	}
}

// metricsWorker is a worker whose client, guard and worker record into
// one registry, wired as the binary wires them; the client logs in with
// password.
func (e *testEnv) metricsWorker(t *testing.T, cfg Config, password string) (*prometheus.Registry, *runningWorker) {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	ccfg := e.clientConfig()
	ccfg.Credentials.Password = cckmclient.Secret(password)
	ccfg.RetryBudget = 2 * time.Second
	ccfg.OnAttempt = func(a cckmclient.Attempt) { metrics.ObserveCall(a.Op, a.Kind, a.Status, a.Duration, a.Retry) }
	ccfg.OnTokenGrant = metrics.ObserveTokenGrant
	ccfg.Gate = NewGuard(GuardConfig{FirstHold: 20 * time.Millisecond, MaxHold: 100 * time.Millisecond}, zerolog.Nop(), metrics)
	client, err := cckmclient.New(ccfg)
	require.NoError(t, err)
	return reg, e.runWorker(t, cfg, client, metrics)
}

// What an operator sees when CipherTrust Manager stops answering: the
// runbook names these series, and this test is what they do.
func TestWhatMovesWhenCipherTrustManagerIsDown(t *testing.T) {
	kinds := []messages.Kind{messages.KindRefresh, "azure-bulkjob"}
	k := func(kind messages.Kind, labels map[string]string) map[string]string {
		labels["kind"] = string(kind)
		return labels
	}
	sendAll := func(t *testing.T, env *testEnv) {
		for _, kind := range kinds {
			env.publish(t, kind, `{"id":"`+messages.NewRequestID()+`"}`, nil)
		}
	}

	t.Run("with a token in hand: attempts without an answer", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		results := env.watchResults(t, messages.SubjectResults)
		reg, _ := env.metricsWorker(t, testConfig(ModeJetStream), testPassword)
		sendAll(t, env) // CipherTrust Manager up: a token, and two cancels
		for range kinds {
			result, _ := results.next(t)
			require.Equal(t, messages.StatusCanceled, result.Status)
		}
		env.cm.Close()
		sendAll(t, env)
		for range kinds {
			result, _ := results.next(t)
			require.Equal(t, messages.StatusFailed, result.Status)
			require.Equal(t, messages.CodeUnreachable, result.Error.Code)
		}
		for _, kind := range kinds {
			requireSeriesReaches(t, reg, "cckm_cancel_results_total", k(kind, map[string]string{"status": "canceled", "code": ""}), 1)
			requireSeriesReaches(t, reg, "cckm_cancel_results_total", k(kind, map[string]string{"status": "failed", "code": "unreachable"}), 1)
			assert.Equal(t, 1.0, requireSeries(t, reg, "cckm_cancel_cm_attempts_total", k(kind, map[string]string{"op": "cancel", "http_status": "200"})))
			assert.Positive(t, requireSeries(t, reg, "cckm_cancel_cm_attempts_total", k(kind, map[string]string{"op": "cancel", "http_status": "none"})),
				"the attempts that got no answer")
			assert.Equal(t, 1.0, requireSeries(t, reg, "cckm_cancel_redeliveries_total", k(kind, map[string]string{})))
			requireSeriesReaches(t, reg, "cckm_cancel_dead_letters_total", k(kind, map[string]string{}), 1)
		}
		assert.Equal(t, 1.0, requireSeries(t, reg, "cckm_cancel_cm_token_grants_total", map[string]string{"grant": "password", "outcome": "ok"}))
		assert.Zero(t, requireSeries(t, reg, "cckm_cancel_cm_token_grants_total", map[string]string{"grant": "password", "outcome": "unreachable"}),
			"the token in hand is used: no grant is tried")
		assert.Positive(t, requireSeries(t, reg, "cckm_cancel_cm_holds_total", map[string]string{}), "the failures in a row began a hold")
	})

	t.Run("without a token: failed grants, no attempts at all", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		results := env.watchResults(t, messages.SubjectResults)
		env.cm.Close()
		reg, _ := env.metricsWorker(t, testConfig(ModeJetStream), testPassword)
		sendAll(t, env)
		for range kinds {
			result, _ := results.next(t)
			require.Equal(t, messages.StatusFailed, result.Status)
			require.Equal(t, messages.CodeUnreachable, result.Error.Code)
		}
		assert.Positive(t, requireSeries(t, reg, "cckm_cancel_cm_token_grants_total", map[string]string{"grant": "password", "outcome": "unreachable"}))
		for _, kind := range kinds {
			requireSeriesReaches(t, reg, "cckm_cancel_results_total", k(kind, map[string]string{"status": "failed", "code": "unreachable"}), 1)
			requireSeriesReaches(t, reg, "cckm_cancel_dead_letters_total", k(kind, map[string]string{}), 1)
			assert.Zero(t, requireSeries(t, reg, "cckm_cancel_cm_attempts_total", k(kind, map[string]string{"op": "cancel", "http_status": "none"})),
				"no job call is sent without a token")
			assert.Zero(t, requireSeries(t, reg, "cckm_cancel_cm_call_duration_seconds", k(kind, map[string]string{"op": "cancel"})))
		}
		assert.Zero(t, requireSeries(t, reg, "cckm_cancel_cm_held", map[string]string{}), "the guard hears only of job calls")
	})
}

// What an operator sees when CipherTrust Manager refuses the worker's
// credentials, as the runbook says.
func TestWhatMovesWhenTheTokenIsRefused(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	results := env.watchResults(t, messages.SubjectResults)
	reg, _ := env.metricsWorker(t, testConfig(ModeJetStream), "not-the-password")
	env.publish(t, "azure-bulkjob", `{"id":"`+messages.NewRequestID()+`"}`, nil)
	result, _ := results.next(t)
	require.Equal(t, messages.StatusFailed, result.Status)
	require.Equal(t, messages.CodeUnauthorized, result.Error.Code)
	requireSeriesReaches(t, reg, "cckm_cancel_results_total", map[string]string{"kind": "azure-bulkjob", "status": "failed", "code": "unauthorized"}, 1)
	assert.Positive(t, requireSeries(t, reg, "cckm_cancel_cm_token_grants_total", map[string]string{"grant": "password", "outcome": "refused"}))
	assert.Zero(t, requireSeries(t, reg, "cckm_cancel_cm_token_grants_total", map[string]string{"grant": "password", "outcome": "ok"}))
}
