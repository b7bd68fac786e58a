package cckmclient

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing. Every HTTP attempt, on a job endpoint or the token endpoint, is
// a client span of Config.TracerProvider, a child of the span in the
// call's context. The request carries the attempt span's traceparent;
// without a recording span (tracing off) it carries the one given with
// WithTraceparent, as before. A span holds the method, the URL (CCKM_URL
// has neither credentials nor a query, and the paths hold only a kind and a
// job id) and the status; never a token, a password or a body.

// tracerName names the client's tracer: its import path.
const tracerName = "github.com/cckm/cckm-cancel-worker/cckmclient"

// clientSpan is the option every attempt span starts with, made once so
// that starting a span allocates no option slice.
var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// traceContext writes and reads W3C traceparent headers.
var traceContext = propagation.TraceContext{}

// newTracer returns the tracer of a client: tp's, or a no-op one.
func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// startAttemptSpan starts the client span of one HTTP attempt, named for
// its method as HTTP client spans are. The method and URL attributes are
// only set when the span records (the extra ones are the caller's to build).
func startAttemptSpan(ctx context.Context, tracer trace.Tracer, method, target string, extra ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx, span := tracer.Start(ctx, method, clientSpan...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("http.request.method", method),
			attribute.String("url.full", target),
		)
		span.SetAttributes(extra...)
	}
	return ctx, span
}

// setTraceparent sets req's traceparent: the attempt span's when it has a
// valid one, else the one the call was given with WithTraceparent.
func setTraceparent(ctx context.Context, req *http.Request, span trace.Span) {
	if span.SpanContext().IsValid() {
		traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))
		return
	}
	if tp, ok := ctx.Value(traceparentKey{}).(string); ok {
		req.Header.Set("traceparent", tp)
	}
}

// endAttemptSpan records how an attempt went and ends its span: the status
// when an answer came, and an error status (the HTTP status, or the kind
// of failure, never an error text, which may quote what a server sent) when
// the attempt failed.
func endAttemptSpan(span trace.Span, status int, err error) {
	if span.IsRecording() {
		if status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		if err != nil {
			kind := errorType(status, err)
			span.SetAttributes(attribute.String("error.type", kind))
			span.SetStatus(codes.Error, kind)
		}
	}
	span.End()
}

// errorType names a failed attempt for a span: its HTTP status, or what
// kept an answer from coming.
func errorType(status int, err error) string {
	switch {
	case status != 0:
		return strconv.Itoa(status)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "unreachable"
}
