package worker

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Label values the metrics use. Every series a dashboard or an alert names
// exists at zero from the start: an alert on a counter that appears only
// with its first increment never fires on that increment.
const (
	// httpStatusNone is the http_status of an attempt that got no HTTP
	// answer (refused connection, timeout, reset).
	httpStatusNone = "none"

	// Token grant outcomes (the outcome label of
	// cckm_cancel_cm_token_grants_total).
	grantOK          = "ok"          // a token came
	grantRefused     = "refused"     // a 4xx answer: the credentials were refused
	grantUnreachable = "unreachable" // no answer
	grantFailed      = "failed"      // a 5xx, or an answer holding no token
)

// callOps are the op label values of the call metrics: a cancel, and the
// GET that checks an earlier cancel or follows a job.
var callOps = []string{"cancel", "get"}

// commonHTTPStatuses are the http_status values of
// cckm_cancel_cm_attempts_total that exist from the start for every op and
// kind: no answer, success, the answers the worker turns into result codes,
// and the overload and gateway answers an outage brings. Others appear
// when they first come.
var commonHTTPStatuses = []string{httpStatusNone, "200", "401", "403", "404", "409", "429", "500", "502", "503", "504"}

// resultCodes lists, for each result status, the code label values of
// cckm_cancel_results_total that status can carry ("" for none).
var resultCodes = map[messages.Status][]messages.ErrorCode{
	messages.StatusCanceled: {""},
	messages.StatusRejected: {messages.CodeInvalidRequest},
	messages.StatusFailed: {
		messages.CodeInvalidRequest, messages.CodeNotFound, messages.CodeUnauthorized,
		messages.CodeForbidden, messages.CodeConflict, messages.CodeClientError,
		messages.CodeServerError, messages.CodeUnreachable, messages.CodeAbortNotSet,
	},
}

// publishOutputs are the what label values of
// cckm_cancel_publish_failures_total: the things the worker publishes.
var publishOutputs = []string{"result", "dead_letter", "follow_task", "settled"}

// States of cckm_cancel_cm_permits.
const (
	permitHeld    = "held"
	permitWaiting = "waiting"
)

// grantTypes are the grant label values of
// cckm_cancel_cm_token_grants_total, and tokenGrantOutcomes its outcome
// values.
var (
	grantTypes         = []string{"password", "refresh_token"}
	tokenGrantOutcomes = []string{grantOK, grantRefused, grantUnreachable, grantFailed}
)

// Metrics are the worker's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	results      *prometheus.CounterVec
	callDuration *prometheus.HistogramVec
	attempts     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	redeliveries *prometheus.CounterVec
	inFlight     prometheus.Gauge
	deadLetters  *prometheus.CounterVec
	publishFails *prometheus.CounterVec
	tokenGrants  *prometheus.CounterVec
	held         prometheus.Gauge
	holds        prometheus.Counter
	permits      *prometheus.GaugeVec
	// The two series of permits, looked up once: they are set on every
	// call that keeps or hands on a permit.
	permitsHeld, permitsWaiting prometheus.Gauge
}

// NewMetrics creates the metrics, with every series named by the label
// values above at zero, and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_results_total",
			Help: "Results published, by kind, status (canceled, failed, rejected) and error code (empty when canceled).",
		}, []string{"kind", "status", "code"}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cckm_cancel_cm_call_duration_seconds",
			Help:    "Duration of each HTTP attempt to CipherTrust Manager, answered or not, by operation and kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op", "kind"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_cm_attempts_total",
			Help: "HTTP attempts sent to CipherTrust Manager, by operation, kind and HTTP status of the answer (none: no answer came).",
		}, []string{"op", "kind", "http_status"}),
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
			Help: "Publishes that failed after their tries (result, dead_letter, follow_task, settled).",
		}, []string{"what"}),
		tokenGrants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cckm_cancel_cm_token_grants_total",
			Help: "Calls to CipherTrust Manager's token endpoint, by grant type and outcome (ok, refused, unreachable, failed).",
		}, []string{"grant", "outcome"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cckm_cancel_cm_held",
			Help: "1 while new calls to CipherTrust Manager are held (it answered 429 or 503, or kept failing) and only probes go, else 0.",
		}),
		holds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cckm_cancel_cm_holds_total",
			Help: "Times calls to CipherTrust Manager began to be held.",
		}),
		permits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cckm_cancel_cm_permits",
			Help: "CCKM_MAX_IN_FLIGHT permits this instance holds (state held), and its calls waiting for one (state waiting).",
		}, []string{"state"}),
	}
	m.initSeries()
	reg.MustRegister(m.results, m.callDuration, m.attempts, m.retries, m.redeliveries, m.inFlight,
		m.deadLetters, m.publishFails, m.tokenGrants, m.held, m.holds, m.permits)
	return m
}

// initSeries creates every series named by the label value lists at zero.
func (m *Metrics) initSeries() {
	for _, kind := range messages.Kinds {
		k := string(kind)
		for status, codes := range resultCodes {
			for _, code := range codes {
				m.results.WithLabelValues(k, string(status), string(code))
			}
		}
		for _, op := range callOps {
			m.callDuration.WithLabelValues(op, k)
			for _, status := range commonHTTPStatuses {
				m.attempts.WithLabelValues(op, k, status)
			}
		}
		m.retries.WithLabelValues(k)
		m.redeliveries.WithLabelValues(k)
		m.deadLetters.WithLabelValues(k)
	}
	for _, what := range publishOutputs {
		m.publishFails.WithLabelValues(what)
	}
	for _, grant := range grantTypes {
		for _, outcome := range tokenGrantOutcomes {
			m.tokenGrants.WithLabelValues(grant, outcome)
		}
	}
	m.permitsHeld = m.permits.WithLabelValues(permitHeld)
	m.permitsWaiting = m.permits.WithLabelValues(permitWaiting)
}

// ObserveCall records one HTTP attempt to CipherTrust Manager; status is
// its HTTP status, 0 when no answer came.
func (m *Metrics) ObserveCall(op string, kind messages.Kind, status int, d time.Duration, retry bool) {
	if m == nil {
		return
	}
	m.callDuration.WithLabelValues(op, string(kind)).Observe(d.Seconds())
	m.attempts.WithLabelValues(op, string(kind), httpStatusLabel(status)).Inc()
	if retry {
		m.retries.WithLabelValues(string(kind)).Inc()
	}
}

// httpStatusLabel is the http_status label value of status.
func httpStatusLabel(status int) string {
	if status == 0 {
		return httpStatusNone
	}
	return strconv.Itoa(status)
}

// ObserveTokenGrant records one call to the token endpoint.
func (m *Metrics) ObserveTokenGrant(grant string, err error) {
	if m == nil {
		return
	}
	m.tokenGrants.WithLabelValues(grant, grantOutcome(err)).Inc()
}

// grantOutcome is the outcome label value of a token grant's error.
func grantOutcome(err error) string {
	if err == nil {
		return grantOK
	}
	var apiErr *cckmclient.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests:
		return grantFailed // too many requests: the credentials were not judged
	case errors.As(err, &apiErr) && apiErr.StatusCode >= http.StatusBadRequest && apiErr.StatusCode < http.StatusInternalServerError:
		return grantRefused
	case errors.As(err, &apiErr):
		return grantFailed
	}
	var unreachable *cckmclient.UnreachableError
	if errors.As(err, &unreachable) {
		return grantUnreachable
	}
	return grantFailed
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

// setPermits records the permits held and the calls waiting for one.
func (m *Metrics) setPermits(held, waiting int) {
	if m != nil {
		m.permitsHeld.Set(float64(held))
		m.permitsWaiting.Set(float64(waiting))
	}
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
