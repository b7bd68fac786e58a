package worker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Metrics are the worker's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	results      *prometheus.CounterVec
	callDuration *prometheus.HistogramVec
	retries      *prometheus.CounterVec
	redeliveries *prometheus.CounterVec
	inFlight     prometheus.Gauge
	deadLetters  *prometheus.CounterVec
	publishFails *prometheus.CounterVec
	tokenGrants  *prometheus.CounterVec
	held         prometheus.Gauge
	holds        prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_results_total",
			Help: "Results published, by kind, status and error code.",
		}, []string{"kind", "status", "code"}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cckm_cancel_cm_call_duration_seconds",
			Help:    "Duration of each HTTP attempt to CipherTrust Manager, by operation, kind and HTTP status (0: no answer).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op", "kind", "status"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_cm_retries_total",
			Help: "HTTP attempts to CipherTrust Manager that were retries of a failed one.",
		}, []string{"kind"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_redeliveries_total",
			Help: "Requests received again from JetStream (delivery count above 1).",
		}, []string{"kind"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cckm_cancel_in_flight",
			Help: "Requests being processed now.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_dead_letters_total",
			Help: "Requests copied to cckm.cancel.dead.<kind> after their last delivery failed.",
		}, []string{"kind"}),
		publishFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_publish_failures_total",
			Help: "Failed publishes of results or dead letters (the request is redelivered).",
		}, []string{"what"}),
		tokenGrants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_cm_token_grants_total",
			Help: "Calls to CipherTrust Manager's token endpoint, by grant type and outcome.",
		}, []string{"grant", "outcome"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cckm_cancel_cm_held",
			Help: "1 while new calls to CipherTrust Manager are held (it answered 429 or 503, or kept failing) and only probes go, else 0.",
		}),
		holds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cckm_cancel_cm_holds_total",
			Help: "Times calls to CipherTrust Manager began to be held.",
		}),
	}
	reg.MustRegister(m.results, m.callDuration, m.retries, m.redeliveries, m.inFlight,
		m.deadLetters, m.publishFails, m.tokenGrants, m.held, m.holds)
	return m
}

// ObserveCall records one HTTP attempt to CipherTrust Manager.
func (m *Metrics) ObserveCall(op string, kind messages.Kind, status int, d time.Duration, retry bool) {
	if m == nil {
		return
	}
	m.callDuration.WithLabelValues(op, string(kind), strconv.Itoa(status)).Observe(d.Seconds())
	if retry {
		m.retries.WithLabelValues(string(kind)).Inc()
	}
}

// ObserveTokenGrant records one call to the token endpoint.
func (m *Metrics) ObserveTokenGrant(grant string, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.tokenGrants.WithLabelValues(grant, outcome).Inc()
}

func (m *Metrics) result(r messages.Result) {
	if m == nil {
		return
	}
	code := ""
	if r.Error != nil {
		code = string(r.Error.Code)
	}
	m.results.WithLabelValues(string(r.Kind), string(r.Status), code).Inc()
}

func (m *Metrics) redelivery(kind messages.Kind) {
	if m != nil {
		m.redeliveries.WithLabelValues(string(kind)).Inc()
	}
}

func (m *Metrics) deadLetter(kind messages.Kind) {
	if m != nil {
		m.deadLetters.WithLabelValues(string(kind)).Inc()
	}
}

func (m *Metrics) publishFailed(what string) {
	if m != nil {
		m.publishFails.WithLabelValues(what).Inc()
	}
}

func (m *Metrics) addInFlight(delta float64) {
	if m != nil {
		m.inFlight.Add(delta)
	}
}

// setHeld records that calls to CipherTrust Manager began, or ceased, to
// be held.
func (m *Metrics) setHeld(held bool) {
	if m == nil {
		return
	}
	if held {
		m.held.Set(1)
		m.holds.Inc()
		return
	}
	m.held.Set(0)
}

// LoginGauge is cckm_cancel_cm_login_refused: 1 after CipherTrust Manager
// refused the worker's credentials, 0 after it granted a token. A nil
// *LoginGauge records nothing.
type LoginGauge struct{ refused prometheus.Gauge }

// NewLoginGauge creates the gauge, at 0, and registers it with reg.
func NewLoginGauge(reg prometheus.Registerer) *LoginGauge {
	g := &LoginGauge{refused: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cckm_cancel_cm_login_refused",
		Help: "1 after CipherTrust Manager refused the login (check the credential settings), 0 after it granted a token.",
	})}
	reg.MustRegister(g.refused)
	return g
}

// Set records a refused login (true) or a granted token (false).
func (g *LoginGauge) Set(refused bool) {
	if g == nil {
		return
	}
	if refused {
		g.refused.Set(1)
		return
	}
	g.refused.Set(0)
}
