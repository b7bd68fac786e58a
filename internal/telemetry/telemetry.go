// Package telemetry sets up the process's OpenTelemetry tracing from the
// SDK's own OTEL_* variables: spans exported over OTLP/HTTP with protobuf
// when an OTLP endpoint is configured, and a no-op tracer provider, with
// no SDK pipeline at all, when none is.
//
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED=true
// or OTEL_TRACES_EXPORTER=none. The SDK reads every other OTEL_* variable
// itself (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_EXPORTER_OTLP_HEADERS and _TIMEOUT, OTEL_TRACES_SAMPLER, OTEL_BSP_*,
// ...); OTEL_EXPORTER_OTLP_(TRACES_)HEADERS and _TIMEOUT,
// OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER(_ARG) are checked first,
// since the SDK only warns about a bad one (printing the headers' bad part,
// secret and all, on standard error).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// DefaultServiceName is the service.name of the spans when
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) does not
// set one.
const DefaultServiceName = "cckm-cancel-worker"

// protocolHTTPProtobuf is the one OTLP protocol the exporter speaks, the
// specification's default.
const protocolHTTPProtobuf = "http/protobuf"

// Settings is what the OTEL_* variables say about tracing.
type Settings struct {
	// Enabled is true when spans are exported: an endpoint is set and
	// nothing turns tracing off.
	Enabled bool
	// Endpoint is where spans go, with any password and query masked, for
	// the log; empty when tracing is off.
	Endpoint string
	// Off says why tracing is off, for the log; empty when it is on.
	Off string
}

// ReadSettings reads the variables that turn tracing on or off through
// getenv. A protocol other than http/protobuf, an exporter other than
// otlp or none, an endpoint that is not an http(s) URL, or (with tracing
// on) resource attributes or a sampler the SDK cannot read is an error
// naming the variable.
func ReadSettings(getenv func(string) string) (Settings, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return Settings{Off: "OTEL_SDK_DISABLED=true"}, nil
	}
	switch exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exporter {
	case "", "otlp":
	case "none":
		return Settings{Off: "OTEL_TRACES_EXPORTER=none"}, nil
	default:
		return Settings{}, fmt.Errorf("OTEL_TRACES_EXPORTER %q is not supported: use otlp or none", exporter)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if protocol := strings.TrimSpace(getenv(name)); protocol != "" && protocol != protocolHTTPProtobuf {
			return Settings{}, fmt.Errorf("%s %q is not supported: use %s", name, protocol, protocolHTTPProtobuf)
		}
	}
	name, endpoint := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	if endpoint == "" {
		name, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	}
	if endpoint == "" {
		return Settings{Off: "no OTLP endpoint set"}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Settings{}, fmt.Errorf("%s is not an http(s) URL such as http://collector:4318", name)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		if err := checkHeaders(name, getenv(name)); err != nil {
			return Settings{}, err
		}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"} {
		if timeout := strings.TrimSpace(getenv(name)); timeout != "" {
			if ms, err := strconv.Atoi(timeout); err != nil || ms < 0 {
				return Settings{}, fmt.Errorf("%s %q is not a number of milliseconds, such as 10000", name, timeout)
			}
		}
	}
	if err := checkResourceAttributes(getenv("OTEL_RESOURCE_ATTRIBUTES")); err != nil {
		return Settings{}, err
	}
	if err := checkSampler(getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG")); err != nil {
		return Settings{}, err
	}
	return Settings{Enabled: true, Endpoint: loggable(u)}, nil
}

// checkHeaders checks the OTLP headers variable name as the exporter reads
// it: name=value pairs separated by commas, names HTTP tokens, values
// percent-encoded. The exporter would print a bad pair on standard error,
// and these headers carry the collector's API key; the error quotes none
// of it.
func checkHeaders(name, headers string) error {
	if strings.TrimSpace(headers) == "" {
		return nil
	}
	for _, pair := range strings.Split(headers, ",") {
		key, value, found := strings.Cut(pair, "=")
		if !found || !isHeaderName(strings.TrimSpace(key)) {
			return fmt.Errorf("%s must be name=value pairs separated by commas, such as api-key=... (the value not shown)", name)
		}
		if _, err := url.PathUnescape(value); err != nil {
			return fmt.Errorf("%s: a value is not percent-encoded right (not shown)", name)
		}
	}
	return nil
}

// isHeaderName reports whether s is an HTTP header name (a token).
func isHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') && !('0' <= c && c <= '9') && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// checkResourceAttributes checks OTEL_RESOURCE_ATTRIBUTES as the SDK reads
// it: key=value pairs separated by commas, values percent-encoded. The SDK
// only warns about a bad one and then leaves attributes out. The error
// quotes no value.
func checkResourceAttributes(attributes string) error {
	if strings.TrimSpace(attributes) == "" {
		return nil
	}
	for _, pair := range strings.Split(attributes, ",") {
		key, value, found := strings.Cut(pair, "=")
		if !found || strings.TrimSpace(key) == "" {
			return errors.New("OTEL_RESOURCE_ATTRIBUTES must be key=value pairs separated by commas, such as deployment.environment=prod")
		}
		if _, err := url.PathUnescape(strings.TrimSpace(value)); err != nil {
			return fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: the value of %q is not percent-encoded right", strings.TrimSpace(key))
		}
	}
	return nil
}

// samplers are the OTEL_TRACES_SAMPLER values the SDK knows, each with
// whether it reads OTEL_TRACES_SAMPLER_ARG (a ratio).
var samplers = map[string]bool{
	"always_on": false, "always_off": false, "traceidratio": true,
	"parentbased_always_on": false, "parentbased_always_off": false, "parentbased_traceidratio": true,
}

// checkSampler checks OTEL_TRACES_SAMPLER and, for a ratio sampler,
// OTEL_TRACES_SAMPLER_ARG (0 to 1). The SDK only warns about a bad one and
// then samples every trace.
func checkSampler(sampler, arg string) error {
	sampler = strings.ToLower(strings.TrimSpace(sampler))
	if sampler == "" {
		return nil
	}
	takesRatio, known := samplers[sampler]
	if !known {
		return fmt.Errorf("OTEL_TRACES_SAMPLER %q is not supported: use always_on, always_off, traceidratio or parentbased_ with one of them", sampler)
	}
	if arg = strings.TrimSpace(arg); takesRatio && arg != "" {
		if ratio, err := strconv.ParseFloat(arg, 64); err != nil || ratio < 0 || ratio > 1 {
			return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q is not a ratio from 0 to 1", arg)
		}
	}
	return nil
}

// loggable is endpoint as the log may show it: its user information, query
// and fragment masked. An API key is sometimes put in the query; the
// exporter drops the query, but the log would still show it. A user part
// without a password is a token as often as a name (as in a NATS URL), so
// it is masked too.
func loggable(endpoint *url.URL) string {
	shown := *endpoint
	if shown.RawQuery != "" {
		shown.RawQuery = "xxxxx"
	}
	if shown.Fragment != "" {
		shown.Fragment, shown.RawFragment = "xxxxx", ""
	}
	if shown.User != nil {
		if _, hasPassword := shown.User.Password(); !hasPassword {
			shown.User = url.User("xxxxx")
		}
	}
	return shown.Redacted()
}

// Tracing is the process's tracer provider and its shutdown.
type Tracing struct {
	provider trace.TracerProvider
	sdk      *sdktrace.TracerProvider // nil when tracing is off
}

// Start returns the tracing settings say: with tracing on, an SDK tracer
// provider whose batch processor exports to the endpoint (export errors
// are logged to log as warnings); with it off, a no-op provider. It makes
// no connection: the first export does.
func Start(ctx context.Context, settings Settings, log zerolog.Logger) (*Tracing, error) {
	if !settings.Enabled {
		return &Tracing{provider: noop.NewTracerProvider()}, nil
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	// Later sources win: the default name, then what the variables say.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn().Err(err).Msg("tracing: cannot export spans")
	}))
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return &Tracing{provider: provider, sdk: provider}, nil
}

// TracerProvider is what to trace with: the SDK's, or a no-op provider
// when tracing is off.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.provider }

// Shutdown exports the spans still buffered and stops the exporter, within
// ctx. With tracing off, or on a nil *Tracing, it does nothing.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.sdk == nil {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}
