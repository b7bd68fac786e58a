// Package cckmclient is a client for the CipherTrust Manager (CCKM) job
// endpoints the worker needs: cancel and get of external-CM refreshes and
// AWS KMS bulk jobs. It handles authentication and token renewal, TLS,
// retries with back-off, and CipherTrust Manager's errors. It knows nothing
// of NATS.
//
// Token renewal never storms: whatever CipherTrust Manager's clock or a
// token response's duration says, and whatever the token endpoint answers,
// one Client asks it for a token at most once a second. A token just
// obtained is used even when it says it has expired already: CipherTrust
// Manager judges, and a 401 renews it once.
package cckmclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Config configures a Client. Zero values take the defaults named on each
// field.
type Config struct {
	// BaseURL is CipherTrust Manager's base URL, e.g. https://cm.example.com.
	BaseURL string
	// Credentials say how to authenticate.
	Credentials Credentials
	// CAFile names a PEM bundle added to the system roots.
	CAFile string
	// InsecureSkipVerify turns TLS verification off. New logs a warning.
	InsecureSkipVerify bool
	// Timeout bounds each HTTP attempt. Default 30 s.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call, the first included.
	// Default 4.
	MaxAttempts int
	// RetryBudget bounds the time of one call, all attempts and waits
	// included. Default 30 s.
	RetryBudget time.Duration
	// BaseBackoff and MaxBackoff shape the exponential back-off with full
	// jitter between attempts. Defaults 250 ms and 5 s.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// MaxConnsPerHost is how many idle connections to keep to CipherTrust
	// Manager; set it to at least the number of concurrent calls.
	// Default 128.
	MaxConnsPerHost int
	// RenewMargin is how long before expiry the JWT is renewed; it is cut to
	// a fifth of the token's lifetime for short-lived tokens. Default 60 s.
	RenewMargin time.Duration
	// Logger receives retries and token renewals. Default: none.
	Logger *zerolog.Logger
	// OnAttempt, if set, is called after every HTTP attempt on a job
	// endpoint (for metrics).
	OnAttempt func(Attempt)
	// OnTokenGrant, if set, is called after every call to the token
	// endpoint with the grant type and its error.
	OnTokenGrant func(grant string, err error)
	// Gate, if set, is waited for before every HTTP attempt on a job
	// endpoint and told how it went (a rate limit, a shared back-off). A
	// call whose time runs out while it waits fails with an
	// *UnreachableError wrapping ErrNotSent, unless an earlier attempt's
	// error says more.
	Gate Gate
	// TracerProvider, if set, traces every HTTP attempt as a client span,
	// a child of the span in the call's context, and the request carries
	// that span's traceparent. Default: no tracing (a no-op provider).
	TracerProvider trace.TracerProvider
}

// Attempt describes one HTTP attempt, for metrics.
type Attempt struct {
	Op       string // "cancel" or "get"
	Kind     messages.Kind
	Status   int // 0 when no answer came
	Duration time.Duration
	Retry    bool // the attempt is a retry
}

// Defaults for Config's zero values.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultMaxAttempts     = 4
	DefaultRetryBudget     = 30 * time.Second
	DefaultBaseBackoff     = 250 * time.Millisecond
	DefaultMaxBackoff      = 5 * time.Second
	DefaultMaxConnsPerHost = 128
	DefaultRenewMargin     = 60 * time.Second
)

// maxBodySize bounds what the client reads of any response.
const maxBodySize = 4 << 20

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBudget <= 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.BaseBackoff <= 0 {
		c.BaseBackoff = DefaultBaseBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxConnsPerHost <= 0 {
		c.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if c.RenewMargin <= 0 {
		c.RenewMargin = DefaultRenewMargin
	}
}

// Client calls CipherTrust Manager. It is safe for concurrent use; make one
// and share it, so that calls share connections and one token.
type Client struct {
	cfg     Config
	base    *url.URL
	baseURL string // base.String(), once
	http    *http.Client
	tokens  *tokenSource
	log     zerolog.Logger
	tracer  trace.Tracer
	secrets []Secret // never printed in clear: Secret masks itself
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
}

// New checks cfg and returns a Client. It makes no call: the first token is
// fetched by the first call that needs it.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if err := cfg.Credentials.Validate(); err != nil {
		return nil, err
	}
	logger := zerolog.Nop()
	if cfg.Logger != nil {
		logger = *cfg.Logger
	}
	transport, err := newTransport(cfg, base)
	if err != nil {
		return nil, err
	}
	if cfg.InsecureSkipVerify {
		logger.Warn().Str("setting", "CCKM_INSECURE_SKIP_VERIFY").
			Msg("TLS verification of CipherTrust Manager is OFF: anyone on the path can read the credentials")
	}
	httpClient := &http.Client{
		Transport: transport,
		// CipherTrust Manager does not redirect its API; a redirect would
		// carry the token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c := &Client{
		cfg:     cfg,
		base:    base,
		baseURL: base.String(),
		http:    httpClient,
		log:     logger,
		tracer:  newTracer(cfg.TracerProvider),
		secrets: cfg.Credentials.secrets(),
		now:     time.Now,
		sleep:   sleepContext,
	}
	c.tokens = &tokenSource{
		creds:        cfg.Credentials,
		endpoint:     base.JoinPath(tokenPath).String(),
		httpClient:   httpClient,
		timeout:      cfg.Timeout,
		renewMargin:  cfg.RenewMargin,
		log:          logger,
		tracer:       c.tracer,
		now:          time.Now,
		onRenew:      cfg.OnTokenGrant,
		renewing:     make(chan struct{}, 1),
		refreshToken: cfg.Credentials.RefreshToken,
		scrub:        c.scrub,
	}
	return c, nil
}

// CloseIdleConnections closes the connections to CipherTrust Manager that
// no call is using. A Client that is done with calls should call it: its
// idle connections (and their goroutines on both ends) otherwise stay open
// until the transport's idle timeout, 90 s.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// parseBaseURL checks CCKM_URL: an absolute http or https URL, no query.
func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("CCKM_URL is required")
	}
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("CCKM_URL %q is not an http(s) URL such as https://cm.example.com", redactURL(raw))
	}
	if u.User != nil {
		return nil, errors.New("CCKM_URL must not carry credentials: use CCKM_USERNAME and CCKM_PASSWORD")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("CCKM_URL %q must not have a query or fragment", redactURL(raw))
	}
	return u, nil
}

// redactURL hides any user information in a URL that failed to parse.
func redactURL(raw string) string {
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		if scheme := strings.Index(raw, "://"); scheme >= 0 && scheme < at {
			return raw[:scheme+3] + secretMask + raw[at:]
		}
		return secretMask + raw[at:]
	}
	return raw
}

// Response is what a call learned, on success and on failure alike.
type Response struct {
	// Job is the decoded job, when a 2xx answer held one.
	Job *Job
	// HTTPStatus is the last HTTP status received; 0 when none was.
	HTTPStatus int
	// Attempts is the number of HTTP attempts on the job endpoint.
	Attempts int
}

// Cancel cancels the job of the given kind: POST .../{id}/cancel with no
// body. A 2xx answer with a job is a success whatever the job's abort flag
// says; the caller judges it. Errors are *APIError, *UnreachableError,
// *AuthError or ErrInvalidID; the Response is filled in either way.
func (c *Client) Cancel(ctx context.Context, kind messages.Kind, id string) (Response, error) {
	return c.call(ctx, http.MethodPost, "cancel", kind, id)
}

// Get reads the job of the given kind: GET .../{id}.
func (c *Client) Get(ctx context.Context, kind messages.Kind, id string) (Response, error) {
	return c.call(ctx, http.MethodGet, "get", kind, id)
}

// jobPath returns the path of a job, or of its cancel action: the kind's
// collection, then the id, checked to be a UUID and in lower case.
func jobPath(kind messages.Kind, id string, cancel bool) (string, error) {
	collection := kind.Collection()
	if collection == "" {
		return "", fmt.Errorf("unknown job kind %q", kind)
	}
	if !messages.IsUUID(id) {
		return "", fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	path := collection + "/" + url.PathEscape(strings.ToLower(id))
	if cancel {
		path += "/cancel"
	}
	return path, nil
}

func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Format prints the client as its URL and credential mode under every verb:
// fmt does not call Secret's own methods on unexported fields, so the
// default struct printing would show the credentials.
func (c Client) Format(f fmt.State, _ rune) {
	_, _ = fmt.Fprintf(f, "cckmclient.Client{%s, %s}", c.baseURL, c.cfg.Credentials.Mode())
}
