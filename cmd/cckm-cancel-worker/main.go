// Command cckm-cancel-worker cancels CipherTrust Manager CCKM jobs on
// request from NATS: it reads job ids from cckm.cancel.refresh and
// cckm.cancel.bulkjob, calls CipherTrust Manager's cancel endpoint, and
// publishes a result event for every request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/internal/buildinfo"
	"github.com/cckm/cckm-cancel-worker/internal/telemetry"
	"github.com/cckm/cckm-cancel-worker/worker"
)

func main() {
	tuneGC()
	os.Exit(mainExit(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// tuneGC trades a little memory for less garbage-collection work, unless
// GOGC or GOMEMLIMIT say otherwise: collect at 200% growth instead of 100%,
// but collect harder as the heap nears 40 MiB, so the worker stays within
// its 48 MiB budget (README, benchmarks).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(40 << 20)
	}
}

// mainExit runs the worker and returns the exit status: 0 after a clean
// stop, 2 for a bad setting, 1 when the worker cannot run.
func mainExit(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errVersion) {
		fmt.Fprintln(stdout, buildinfo.String("cckm-cancel-worker"))
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cckm-cancel-worker: %v\n", err)
		return 2
	}
	logOut := newLogWriter(stdout)
	defer logOut.Close()
	log := newLogger(cfg, logOut, isTerminal(stdout))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, log, logOut); err != nil {
		var startErr *startError
		if errors.As(err, &startErr) {
			// Found before anything started or logged: one line.
			fmt.Fprintf(stderr, "cckm-cancel-worker: %v\n", err)
			return 2
		}
		var settingErr *worker.SettingError
		if errors.As(err, &settingErr) {
			// A stream or consumer with a setting the worker may not correct:
			// a bad setting, like one of the process's own.
			log.Error().Err(err).Msg("cckm-cancel-worker cannot start")
			fmt.Fprintf(stderr, "cckm-cancel-worker: %v\n", err)
			return 2
		}
		log.Error().Err(err).Msg("cckm-cancel-worker stopped")
		return 1
	}
	return 0
}

// newLogger logs to out as LOG_FORMAT says; console lines are coloured
// only when color is true (out is a terminal).
func newLogger(cfg config, out io.Writer, color bool) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	zerolog.DurationFieldUnit = time.Second // durations in the log are seconds, with fractions
	zerolog.DurationFieldInteger = false
	var w io.Writer = out
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly, NoColor: !color}
	}
	logger := zerolog.New(w).Level(cfg.LogLevel).With().Timestamp()
	if cfg.LogFormat != "console" {
		// A person at a console knows what runs; a log collector may not.
		logger = logger.Str("service", "cckm-cancel-worker")
	}
	return logger.Logger()
}

// run wires the parts and runs them until ctx ends, then shuts down in
// order: stop taking work, finish work in flight, drain the NATS
// connection (flushing publishes), stop the HTTP server.
func run(ctx context.Context, cfg config, log zerolog.Logger, stdout io.Writer) error {
	// The ports first, before anything starts or logs: one in use is named
	// at once.
	httpListener, err := listenHTTP(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer httpListener.Close() // for the returns before it is served
	if err := checkNATSFiles(cfg); err != nil {
		return err
	}
	if _, port, _ := net.SplitHostPort(cfg.HTTPAddr); port == "0" {
		cfg.HTTPAddr = httpListener.Addr().String() // the port taken, for the banner
	}
	var dev *devEnv
	if cfg.Dev {
		if dev, err = startDev(cfg, log); err != nil {
			return err
		}
		defer dev.Close()
		cfg = dev.apply(cfg)
	}
	logSummary(log, cfg)
	logConfig(log, cfg)

	// The SDK reads its variables from the environment: the flags that
	// stand for them go there first.
	for name, value := range cfg.OTELFlags {
		if err := os.Setenv(name, value); err != nil {
			return fmt.Errorf("--%s: %w", flagName(name), err)
		}
	}
	tracing, err := telemetry.Start(ctx, cfg.Tracing, log.With().Str("component", "telemetry").Logger())
	if err != nil {
		return err
	}
	tracesFlushed := false // by the stop below; a return before it flushes here
	defer func() {
		if !tracesFlushed {
			flushTraces(tracing, cfg.Worker.ShutdownTimeout, log)
		}
	}()
	if cfg.Tracing.Enabled {
		log.Info().Str("endpoint", cfg.Tracing.Endpoint).Msg("tracing: exporting spans over OTLP/HTTP")
	} else {
		log.Debug().Str("why", cfg.Tracing.Off).Msg("tracing off")
	}

	registry, metrics, loginGauge := newRegistry()

	clientLog := log.With().Str("component", "cckmclient").Logger()
	cckmCfg := cfg.CCKM
	cckmCfg.Logger = &clientLog
	cckmCfg.OnAttempt = func(a cckmclient.Attempt) {
		metrics.ObserveCall(a.Op, a.Kind, a.Status, a.Duration, a.Retry)
	}
	cckmCfg.OnTokenGrant = func(grant string, err error) {
		metrics.ObserveTokenGrant(grant, err)
		observeLogin(loginGauge, err)
	}
	cckmCfg.TracerProvider = tracing.TracerProvider()
	// An attempt takes a CCKM_MAX_IN_FLIGHT permit, then waits out the
	// shared back-off and the rate limit, and is sent the moment the guard
	// lets it: a hold that begins while attempts wait for permits holds
	// them too, and none spends its rate token long before it is sent.
	permits := worker.NewPermits(log.With().Str("component", "permits").Logger(), metrics)
	cckmCfg.Gate = cckmclient.Chain(permits, worker.NewGuard(cfg.Guard, log.With().Str("component", "guard").Logger(), metrics))
	client, err := cckmclient.New(cckmCfg)
	if err != nil {
		return err
	}
	loginCtx, stopLogin := context.WithCancel(ctx)
	loggedIn := loginAtStart(loginCtx, client, cfg, log)
	defer func() {
		stopLogin()
		<-loggedIn
	}()

	nc, err := connectNATS(cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()

	workerCfg := cfg.Worker
	workerCfg.TracerProvider = tracing.TracerProvider()
	workerCfg.Permits = permits
	w, err := worker.New(workerCfg, nc, client, log.With().Str("component", "worker").Logger(), metrics)
	if err != nil {
		return err
	}

	stopHTTP := serveHTTP(httpListener, cfg.HTTPPprof, w, registry, log)

	var runErr error
	if waitForNATS(ctx, nc, cfg, log) {
		log.Info().Msg("cckm-cancel-worker started")
		bannerCtx, stopBanner := context.WithCancel(ctx)
		var banner <-chan struct{} // closed once the dev banner is out
		if dev != nil {
			banner = dev.printHowToWhenReady(bannerCtx, stdout, cfg, w, loggedIn)
		}
		runErr = w.Run(ctx)
		stopBanner() // Run may end before ctx does, with a *worker.SettingError
		if dev != nil {
			<-banner
		}
	}

	// The last spans are exported while the connection drains, not after:
	// a collector that hangs then adds nothing to the stop.
	tracesFlushed = true
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		flushTraces(tracing, cfg.Worker.ShutdownTimeout, log)
	}()
	log.Info().Msg("work in flight finished; draining the NATS connection")
	if err := drainNATS(nc, cfg.Worker.ShutdownTimeout); err != nil {
		log.Warn().Err(err).Msg("draining the NATS connection")
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopHTTP(shutdownCtx)
	<-flushDone
	log.Info().Msg("cckm-cancel-worker stopped")
	return runErr
}

// flushTraces exports the spans still buffered, within timeout, once the
// work is over.
func flushTraces(tracing *telemetry.Tracing, timeout time.Duration, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tracing.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("tracing: cannot export the last spans")
	}
}

// connectNATS connects with reconnection forever: the worker goes on
// through NATS restarts, and says so in the log.
func connectNATS(cfg config, log zerolog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("cckm-cancel-worker"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DrainTimeout(cfg.Worker.ShutdownTimeout),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", redactedURLs(nc.ConnectedUrl())).Msg("connected to NATS")
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() || nc.IsDraining() {
				return
			}
			event := log.Warn()
			if err != nil {
				event = event.Str("error", scrubURLs(err.Error(), cfg.NATSURL))
			}
			event.Msg("disconnected from NATS; reconnecting")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", redactedURLs(nc.ConnectedUrl())).Msg("reconnected to NATS")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			event := log.Error()
			if err != nil {
				event = event.Str("error", scrubURLs(err.Error(), cfg.NATSURL))
			}
			if sub != nil {
				event = event.Str("subject", sub.Subject)
			}
			event.Msg("NATS error")
		}),
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if cfg.NATSNKey != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NATSNKey)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY: %w", err)
		}
		opts = append(opts, opt)
	}
	if cfg.NATSUser != "" {
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword.Reveal()))
	}
	if cfg.NATSToken != "" {
		opts = append(opts, nats.Token(cfg.NATSToken.Reveal()))
	}
	if cfg.NATSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCAFile))
	}
	if cfg.NATSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSCertFile, cfg.NATSKeyFile))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		// nats.go's own error may quote a URL, user information and all.
		return nil, fmt.Errorf("NATS_URL %s: %s", redactedURLs(cfg.NATSURL), scrubURLs(err.Error(), cfg.NATSURL))
	}
	return nc, nil
}

// drainNATS drains the connection (flushing what was published) and waits
// for it to close.
func drainNATS(nc *nats.Conn, timeout time.Duration) error {
	if nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		return err
	}
	select {
	case <-closed:
		return nil
	case <-time.After(timeout + time.Second):
		return errors.New("timed out")
	}
}

// newRegistry is what /metrics serves: the worker's metrics, the login
// gauge, and the Go and process collectors.
func newRegistry() (*prometheus.Registry, *worker.Metrics, *worker.LoginGauge) {
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return registry, worker.NewMetrics(registry), worker.NewLoginGauge(registry)
}
