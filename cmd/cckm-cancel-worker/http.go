package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// readiness is what /readyz asks.
type readiness interface {
	Ready() error
}

// newHTTPHandler serves /healthz (the process is alive), /readyz (NATS is
// connected and the consumer bound) and /metrics; with withPprof, also the
// Go profiler under /debug/pprof/ (HTTP_PPROF, off by default: a profile
// costs CPU and shows the program's internals). /debug/pprof/cmdline is
// left out: secrets may be given as flags, and it would serve them.
func newHTTPHandler(ready readiness, registry *prometheus.Registry, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry}))
	return mux
}

// serveHTTP serves on listener (listenHTTP's, made at start so that a
// port in use stops the process at once) in the background. The returned
// stop shuts the server down and waits for its goroutine.
func serveHTTP(listener net.Listener, withPprof bool, ready readiness, registry *prometheus.Registry, log zerolog.Logger) (stop func(context.Context)) {
	srv := &http.Server{
		Handler:           newHTTPHandler(ready, registry, withPprof),
		ReadHeaderTimeout: 5 * time.Second,
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("HTTP server stopped")
		}
	}()
	log.Info().Str("addr", listener.Addr().String()).Bool("pprof", withPprof).Msg("serving /healthz, /readyz and /metrics")
	return func(ctx context.Context) {
		_ = srv.Shutdown(ctx)
		<-served
	}
}

// redactedURLs hides passwords and tokens in a comma-separated list of NATS
// URLs. Every NATS URL the worker prints goes through it: nats.go's own
// ConnectedUrlRedacted hides a password but shows a token.
func redactedURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, part := range parts {
		part = strings.TrimSpace(part)
		if part != "" && !strings.Contains(part, "://") {
			part = "nats://" + part // as nats.go reads it; else "user:pw@host" parses as scheme "user"
		}
		u, err := url.Parse(part)
		switch {
		case err == nil && u.User != nil:
			part = u.Redacted()
			if _, hasPassword := u.User.Password(); !hasPassword {
				// A bare user part is a token: hide it too.
				u.User = url.User("xxxxx")
				part = u.String()
			}
		case err != nil && strings.Contains(part, "@"):
			// Unparseable: hide everything that may be user information.
			at, start := strings.LastIndex(part, "@"), strings.Index(part, "://")+len("://")
			if start < len("://") || start > at {
				start = 0
			}
			part = part[:start] + "xxxxx" + part[at:]
		}
		parts[i] = part
	}
	return strings.Join(parts, ",")
}

// scrubURLs replaces each URL of the comma-separated list urls that occurs
// in text (such as a nats.go error) with its redacted form. A URL without
// user information is left as it is.
func scrubURLs(text, urls string) string {
	for _, part := range strings.Split(urls, ",") {
		if part = strings.TrimSpace(part); strings.Contains(part, "@") {
			text = strings.ReplaceAll(text, part, redactedURLs(part))
		}
	}
	return text
}

// logConfig logs the whole configuration at start, at debug (logSummary
// has the short line at info); secrets print as a mask.
func logConfig(log zerolog.Logger, cfg config) {
	creds := cfg.CCKM.Credentials
	log.Debug().
		Bool("dev", cfg.Dev).
		Str("nats_url", redactedURLs(cfg.NATSURL)).
		Bool("nats_creds", cfg.NATSCreds != "").
		Bool("nats_nkey", cfg.NATSNKey != "").
		Str("nats_user", cfg.NATSUser).
		Stringer("nats_password", cfg.NATSPassword).
		Stringer("nats_token", cfg.NATSToken).
		Bool("nats_tls", cfg.NATSCAFile != "" || cfg.NATSCertFile != "").
		Str("cckm_url", cfg.CCKM.BaseURL).
		Str("cckm_auth", creds.Mode()).
		Str("cckm_username", creds.Username).
		Stringer("cckm_password", creds.Password).
		Stringer("cckm_token", creds.Token).
		Stringer("cckm_refresh_token", creds.RefreshToken).
		Str("cckm_domain", creds.Domain).
		Str("cckm_ca_file", cfg.CCKM.CAFile).
		Bool("cckm_insecure_skip_verify", cfg.CCKM.InsecureSkipVerify).
		Str("cckm_timeout", cfg.CCKM.Timeout.String()).
		Int("cckm_max_attempts", cfg.CCKM.MaxAttempts).
		Str("cckm_retry_budget", cfg.CCKM.RetryBudget.String()).
		Float64("cckm_rate_limit", cfg.Guard.RateLimit).
		Int("cckm_rate_burst", cfg.Guard.RateBurst).
		Str("worker_mode", string(cfg.Worker.Mode)).
		Int("worker_concurrency", cfg.Worker.Concurrency).
		Int("cckm_max_in_flight", cfg.Worker.MaxInFlight).
		Bool("worker_provision", cfg.Worker.Provision).
		Str("worker_ack_wait", cfg.Worker.AckWait.String()).
		Int("worker_max_deliveries", cfg.Worker.MaxDeliveries).
		Str("worker_retry_delay", cfg.Worker.RetryDelay.String()).
		Str("worker_max_retry_delay", cfg.Worker.MaxRetryDelay.String()).
		Str("worker_shutdown_timeout", cfg.Worker.ShutdownTimeout.String()).
		Bool("worker_follow", cfg.Worker.Follow).
		Str("worker_follow_timeout", cfg.Worker.FollowTimeout.String()).
		Str("worker_follow_interval", cfg.Worker.FollowInterval.String()).
		Str("worker_follow_max_interval", cfg.Worker.FollowMaxInterval.String()).
		Str("http_addr", cfg.HTTPAddr).
		Str("log_level", cfg.LogLevel.String()).
		Str("log_format", cfg.LogFormat).
		Bool("tracing", cfg.Tracing.Enabled).
		Str("otel_exporter_otlp_endpoint", cfg.Tracing.Endpoint).
		Msg("configuration")
}
