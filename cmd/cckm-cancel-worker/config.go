package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/internal/nkeyseed"
	"github.com/cckm/cckm-cancel-worker/internal/telemetry"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// config is everything the process is told, from the environment and
// flags (a flag wins over its variable). Secrets are cckmclient.Secret, so
// logging the config masks them.
type config struct {
	Dev bool
	// DevNATSPort is the port of dev mode's embedded NATS server; 0 takes
	// any free port.
	DevNATSPort int

	NATSURL      string
	NATSCreds    string
	NATSNKey     string
	NATSUser     string
	NATSPassword cckmclient.Secret
	NATSToken    cckmclient.Secret
	NATSCAFile   string
	NATSCertFile string
	NATSKeyFile  string

	CCKM cckmclient.Config
	// Guard paces and holds the calls to CipherTrust Manager.
	Guard worker.GuardConfig

	Worker worker.Config

	// Tracing is what the SDK's OTEL_* variables say about tracing.
	Tracing telemetry.Settings
	// OTELFlags are the OTEL_* variables given as flags, by name: run sets
	// them in the process's environment before the SDK reads it.
	OTELFlags map[string]string

	HTTPAddr  string
	HTTPPprof bool
	LogLevel  zerolog.Level
	LogFormat string
}

// setting is one variable and its flag.
type setting struct {
	env    string
	def    string
	usage  string
	secret bool // may come from <env>_FILE
}

// flagName is the flag for an environment variable: CCKM_URL -> cckm-url.
func flagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// settings lists every variable with its default: the one place defaults
// are written down.
var settings = []setting{
	{env: "NATS_URL", def: "nats://127.0.0.1:4222", usage: "NATS server URL(s), comma-separated"},
	{env: "NATS_CREDS", usage: "NATS credentials file"},
	{env: "NATS_NKEY", usage: "NATS NKey seed file"},
	{env: "NATS_USER", usage: "NATS user"},
	{env: "NATS_PASSWORD", usage: "NATS password", secret: true},
	{env: "NATS_TOKEN", usage: "NATS token", secret: true},
	{env: "NATS_CA_FILE", usage: "CA bundle for the NATS server's certificate"},
	{env: "NATS_CERT_FILE", usage: "client certificate for NATS"},
	{env: "NATS_KEY_FILE", usage: "client key for NATS"},
	{env: "CCKM_URL", usage: "CipherTrust Manager base URL, e.g. https://cm.example.com (required but in dev mode)"},
	{env: "CCKM_TOKEN", usage: "static bearer token", secret: true},
	{env: "CCKM_USERNAME", usage: "CipherTrust Manager user"},
	{env: "CCKM_PASSWORD", usage: "CipherTrust Manager password", secret: true},
	{env: "CCKM_DOMAIN", usage: "CipherTrust Manager domain to log in to"},
	{env: "CCKM_REFRESH_TOKEN", usage: "CipherTrust Manager refresh token", secret: true},
	{env: "CCKM_CA_FILE", usage: "CA bundle added to the system roots for CipherTrust Manager"},
	{env: "CCKM_INSECURE_SKIP_VERIFY", def: "false", usage: "turn TLS verification of CipherTrust Manager off (logged)"},
	{env: "CCKM_TIMEOUT", def: cckmclient.DefaultTimeout.String(), usage: "time limit of each HTTP attempt"},
	{env: "CCKM_MAX_ATTEMPTS", def: strconv.Itoa(cckmclient.DefaultMaxAttempts), usage: "HTTP attempts per delivery, the first included"},
	{env: "CCKM_RETRY_BUDGET", def: cckmclient.DefaultRetryBudget.String(), usage: "time limit of all attempts of one delivery"},
	{env: "CCKM_RATE_LIMIT", def: "0", usage: "HTTP attempts per second to CipherTrust Manager per instance (0: no limit)"},
	{env: "CCKM_RATE_BURST", def: strconv.Itoa(worker.DefaultRateBurst), usage: "attempts that may go at once above CCKM_RATE_LIMIT"},
	{env: "WORKER_MODE", def: string(worker.ModeJetStream), usage: "jetstream or core"},
	{env: "WORKER_CONCURRENCY", def: strconv.Itoa(worker.DefaultConcurrency), usage: "calls to CipherTrust Manager in flight"},
	{env: "CCKM_MAX_IN_FLIGHT", def: strconv.Itoa(worker.DefaultMaxInFlight), usage: "cancel and GET calls in flight across every instance sharing the consumers (at least 1), one permit each in the stream CCKM_CANCEL_INFLIGHT"},
	{env: "WORKER_PROVISION", def: "true", usage: "create missing streams and the consumer"},
	{env: "WORKER_ACK_WAIT", def: worker.DefaultAckWait.String(), usage: "the consumer's ack wait, when the worker creates it"},
	{env: "WORKER_MAX_DELIVERIES", def: strconv.Itoa(worker.DefaultMaxDeliveries), usage: "deliveries before a transient failure becomes a failed result and a dead letter"},
	{env: "WORKER_RETRY_DELAY", def: worker.DefaultRetryDelay.String(), usage: "redelivery delay after the first transient failure (doubles each time)"},
	{env: "WORKER_MAX_RETRY_DELAY", def: worker.DefaultMaxRetryDelay.String(), usage: "longest redelivery delay"},
	{env: "WORKER_SHUTDOWN_TIMEOUT", def: worker.DefaultShutdownTimeout.String(), usage: "how long work in flight may finish at a stop"},
	{env: "WORKER_FOLLOW", def: "false", usage: "follow every canceled job to its end and publish a settled event"},
	{env: "WORKER_FOLLOW_TIMEOUT", def: worker.DefaultFollowTimeout.String(), usage: "how long a follow polls before it settles false"},
	{env: "WORKER_FOLLOW_INTERVAL", def: worker.DefaultFollowInterval.String(), usage: "wait before the second poll of a follow (doubles, up to WORKER_FOLLOW_MAX_INTERVAL; 1s in dev mode)"},
	{env: "WORKER_FOLLOW_MAX_INTERVAL", def: worker.DefaultFollowMaxInterval.String(), usage: "longest wait between two polls of a follow: the end of a job is noticed at most this late (3s in dev mode)"},
	{env: "HTTP_ADDR", def: ":8080", usage: "address of /healthz, /readyz and /metrics"},
	{env: "HTTP_PPROF", def: "false", usage: "also serve the Go profiler under /debug/pprof/ on HTTP_ADDR"},
	{env: "LOG_LEVEL", def: "info", usage: "trace, debug, info, warn or error"},
	{env: "LOG_FORMAT", usage: "json or console (default: console when standard error is a terminal, else json)"},
	{env: "DEV_NATS_PORT", def: strconv.Itoa(devNATSPort), usage: "dev mode: port of the embedded NATS server on 127.0.0.1 (0: any free port)"},
}

// otelVariables are the OpenTelemetry SDK's own variables that are also
// flags of the same meaning (OTEL_SERVICE_NAME -> --otel-service-name). The
// SDK reads them from the environment itself, so a flag given is put
// there before tracing starts; it wins over its variable, as every flag
// does.
var otelVariables = []string{
	"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
	"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
	"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
}

// devDefaults are the defaults that differ in dev mode, where a person
// watches: the simulated jobs end 15 s after their cancel, and a follow
// should say so within a few seconds, not 30.
var devDefaults = map[string]string{
	"WORKER_FOLLOW_INTERVAL":     "1s",
	"WORKER_FOLLOW_MAX_INTERVAL": "3s",
}

// errVersion is loadConfig's answer to --version: print the version, exit 0.
var errVersion = errors.New("version requested")

// maxMaxInFlight bounds CCKM_MAX_IN_FLIGHT: it is the number of permit
// messages the worker publishes into CCKM_CANCEL_INFLIGHT (one by one,
// when it fills the stream; the request consumer's MaxAckPending is
// twice it), and a bound past this protects nothing.
const maxMaxInFlight = 1_000_000

// loadConfig reads settings from getenv and args. An error names the
// setting at fault, in one line.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("cckm-cancel-worker", flag.ContinueOnError)
	// A parse error is reported by the caller in one line; only a request
	// for help prints the usage.
	fs.SetOutput(io.Discard)
	// A flag's default is the built-in one, never the environment's value:
	// the usage text prints defaults, and the environment holds secrets.
	values := map[string]*string{}
	for i := range settings {
		s := &settings[i]
		values[s.env] = fs.String(flagName(s.env), s.def, s.usage+" ("+s.env+")")
		if s.secret {
			values[s.env+"_FILE"] = fs.String(flagName(s.env+"_FILE"), "", "file holding "+s.env+" ("+s.env+"_FILE)")
		}
	}
	otelValues := map[string]*string{}
	for _, name := range otelVariables {
		otelValues[name] = fs.String(flagName(name), "", "OpenTelemetry SDK setting ("+name+")")
	}
	dev := fs.Bool("dev", false, "dev mode: embedded NATS on 127.0.0.1:4222 (DEV_NATS_PORT) and a simulated CipherTrust Manager")
	version := fs.Bool("version", false, "print the name, version and VCS revision, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintf(stderr, "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
		return config{}, err
	}
	if *version {
		return config{}, errVersion
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for env, value := range values {
		if fromEnv := getenv(env); fromEnv != "" && !given[flagName(env)] {
			*value = fromEnv
		} else if devValue, ok := devDefaults[env]; ok && *dev && fromEnv == "" && !given[flagName(env)] {
			*value = devValue
		}
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	p := parser{values: values}
	cfg := config{Dev: *dev, DevNATSPort: p.integer("DEV_NATS_PORT", 0, maxPort)}

	cfg.NATSURL = p.str("NATS_URL")
	cfg.NATSCreds = p.str("NATS_CREDS")
	cfg.NATSNKey = p.str("NATS_NKEY")
	cfg.NATSUser = p.str("NATS_USER")
	cfg.NATSPassword = p.secret("NATS_PASSWORD")
	cfg.NATSToken = p.secret("NATS_TOKEN")
	cfg.NATSCAFile = p.str("NATS_CA_FILE")
	cfg.NATSCertFile = p.str("NATS_CERT_FILE")
	cfg.NATSKeyFile = p.str("NATS_KEY_FILE")

	cfg.CCKM = cckmclient.Config{
		BaseURL: p.str("CCKM_URL"),
		Credentials: cckmclient.Credentials{
			Token:        p.secret("CCKM_TOKEN"),
			Username:     p.str("CCKM_USERNAME"),
			Password:     p.secret("CCKM_PASSWORD"),
			Domain:       p.str("CCKM_DOMAIN"),
			RefreshToken: p.secret("CCKM_REFRESH_TOKEN"),
		},
		CAFile:             p.str("CCKM_CA_FILE"),
		InsecureSkipVerify: p.boolean("CCKM_INSECURE_SKIP_VERIFY"),
		Timeout:            p.duration("CCKM_TIMEOUT"),
		MaxAttempts:        p.integer("CCKM_MAX_ATTEMPTS", 1, 100),
		RetryBudget:        p.duration("CCKM_RETRY_BUDGET"),
	}
	cfg.Worker = worker.Config{
		Mode:            worker.Mode(p.str("WORKER_MODE")),
		Concurrency:     p.integer("WORKER_CONCURRENCY", 1, 10000),
		MaxInFlight:     p.integer("CCKM_MAX_IN_FLIGHT", worker.MinMaxInFlight, maxMaxInFlight),
		Provision:       p.boolean("WORKER_PROVISION"),
		AckWait:         p.duration("WORKER_ACK_WAIT"),
		MaxDeliveries:   p.integer("WORKER_MAX_DELIVERIES", 1, 1000),
		RetryDelay:      p.duration("WORKER_RETRY_DELAY"),
		MaxRetryDelay:   p.duration("WORKER_MAX_RETRY_DELAY"),
		ShutdownTimeout: p.duration("WORKER_SHUTDOWN_TIMEOUT"),
		Follow:          p.boolean("WORKER_FOLLOW"),
		FollowTimeout:   p.duration("WORKER_FOLLOW_TIMEOUT"),
		FollowInterval:  p.duration("WORKER_FOLLOW_INTERVAL"),
	}
	cfg.Worker.FollowMaxInterval = p.duration("WORKER_FOLLOW_MAX_INTERVAL")
	cfg.Worker.CallBudget = cfg.CCKM.RetryBudget
	cfg.Guard = worker.GuardConfig{
		RateLimit: p.rate("CCKM_RATE_LIMIT"),
		RateBurst: p.integer("CCKM_RATE_BURST", 1, maxRateBurst),
		// A hold grows as redelivery delays do.
		FirstHold: cfg.Worker.RetryDelay,
		MaxHold:   cfg.Worker.MaxRetryDelay,
	}
	cfg.CCKM.MaxConnsPerHost = max(cckmclient.DefaultMaxConnsPerHost, cfg.Worker.Concurrency)
	cfg.HTTPAddr = p.str("HTTP_ADDR")
	cfg.HTTPPprof = p.boolean("HTTP_PPROF")
	cfg.LogFormat = p.str("LOG_FORMAT")
	if cfg.LogFormat == "" {
		cfg.LogFormat = defaultLogFormat(stderr)
	}
	cfg.LogLevel = p.level("LOG_LEVEL")
	if p.err != nil {
		return config{}, p.err
	}
	// The OTEL_* variables are the SDK's own; a flag given stands for its
	// variable.
	cfg.OTELFlags = map[string]string{}
	for name, value := range otelValues {
		if given[flagName(name)] {
			cfg.OTELFlags[name] = *value
		}
	}
	tracing, err := telemetry.ReadSettings(func(name string) string {
		if value, ok := cfg.OTELFlags[name]; ok {
			return value
		}
		return getenv(name)
	})
	if err != nil {
		return config{}, err
	}
	cfg.Tracing = tracing
	return cfg, cfg.validate()
}

// validate checks what the parser could not check setting by setting.
func (c *config) validate() error {
	switch c.Worker.Mode {
	case worker.ModeJetStream, worker.ModeCore:
	default:
		return fmt.Errorf("WORKER_MODE %q: must be jetstream or core", c.Worker.Mode)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		return fmt.Errorf("LOG_FORMAT %q: must be json or console", c.LogFormat)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("HTTP_ADDR %q: must be host:port or :port", c.HTTPAddr)
	}
	for _, server := range strings.Split(c.NATSURL, ",") {
		if strings.TrimSpace(server) == "" {
			// nats.go would skip it, or take its own default for an empty list.
			return fmt.Errorf("NATS_URL %q: names no server, or an empty one in its list", redactedURLs(c.NATSURL))
		}
		// As nats.go reads it: a URL without a scheme is nats://.
		if server = strings.TrimSpace(server); !strings.Contains(server, "://") {
			server = "nats://" + server
		}
		if _, err := url.Parse(server); err != nil {
			return fmt.Errorf("NATS_URL %q: not a valid URL", redactedURLs(c.NATSURL))
		}
	}
	if nkeyseed.Looks(c.NATSNKey) {
		return errors.New("NATS_NKEY: give the file holding the NKey seed, not the seed itself")
	}
	if (c.NATSCertFile == "") != (c.NATSKeyFile == "") {
		return errors.New("NATS_CERT_FILE and NATS_KEY_FILE go together: set both or neither")
	}
	if c.NATSUser != "" && c.NATSPassword == "" {
		return errors.New("NATS_PASSWORD is required with NATS_USER")
	}
	if c.Dev {
		return nil // dev mode brings its own NATS and CipherTrust Manager
	}
	if c.CCKM.BaseURL == "" {
		return errors.New("CCKM_URL is required: the CipherTrust Manager base URL, e.g. https://cm.example.com")
	}
	// New checks the URL, the credentials and the TLS files, naming the
	// setting at fault; it makes no call.
	if _, err := cckmclient.New(c.CCKM); err != nil {
		return err
	}
	return nil
}

// parser reads typed settings, keeping the first error.
type parser struct {
	values map[string]*string
	err    error
}

func (p *parser) fail(env, value, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("%s %q: %s", env, value, want)
	}
}

func (p *parser) str(env string) string { return strings.TrimSpace(*p.values[env]) }

func (p *parser) secret(env string) cckmclient.Secret {
	s, err := cckmclient.ResolveSecret(env, *p.values[env], *p.values[env+"_FILE"])
	if err != nil && p.err == nil {
		p.err = err
	}
	return s
}

func (p *parser) boolean(env string) bool {
	value := p.str(env)
	b, err := strconv.ParseBool(value)
	if err != nil {
		p.fail(env, value, "must be true or false")
	}
	return b
}

func (p *parser) integer(env string, lo, hi int) int {
	value := p.str(env)
	n, err := strconv.Atoi(value)
	if err != nil || n < lo || n > hi {
		p.fail(env, value, fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
	}
	return n
}

// maxPort is the highest TCP port.
const maxPort = 65535

// maxRateBurst bounds CCKM_RATE_BURST: more attempts at once than any
// instance has calls in flight would be no limit at all.
const maxRateBurst = 100000

// rate reads a number of calls per second: 0 or more.
func (p *parser) rate(env string) float64 {
	value := p.str(env)
	r, err := strconv.ParseFloat(value, 64)
	if err != nil || r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		p.fail(env, value, "must be a number of calls per second, 0 or more (0: no limit)")
	}
	return r
}

func (p *parser) duration(env string) time.Duration {
	value := p.str(env)
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 {
		p.fail(env, value, "must be a positive duration such as 500ms, 30s or 2m")
	}
	return d
}

func (p *parser) level(env string) zerolog.Level {
	value := p.str(env)
	level, err := zerolog.ParseLevel(strings.ToLower(value))
	if err != nil || value == "" {
		p.fail(env, value, "must be trace, debug, info, warn or error")
	}
	return level
}
