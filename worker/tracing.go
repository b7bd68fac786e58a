package worker

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Tracing. With Config.TracerProvider set to a real provider, every
// request is a consumer span, a child of the request's traceparent (a new
// trace when it had none); the calls to CipherTrust Manager made under it
// are the client's spans, its children; every publish is a producer span;
// and the result, follow task and settled event carry the request span's
// traceparent. Each follow poll is a consumer span under the follow task's
// traceparent. Without one (or with a no-op provider) nothing is traced,
// nothing is allocated for it, and the result carries the request's own
// traceparent.

// tracerName names the worker's tracer: its import path.
const tracerName = "github.com/cckm/cckm-cancel-worker/worker"

// Span start options, made once so that starting a span allocates none.
var (
	consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
)

// notTraced is the span used while tracing is off: it records nothing and
// has no span context.
var notTraced = trace.SpanFromContext(context.Background())

// traceContext reads W3C traceparent headers.
var traceContext = propagation.TraceContext{}

// tracing starts the worker's spans, or none when it is off.
type tracing struct {
	tracer trace.Tracer
	on     bool
}

// newTracing returns the tracing of provider: off when it is nil or a
// no-op provider.
func newTracing(provider trace.TracerProvider) tracing {
	if provider == nil {
		return tracing{tracer: noop.NewTracerProvider().Tracer(tracerName)}
	}
	_, isNoop := provider.(noop.TracerProvider)
	return tracing{tracer: provider.Tracer(tracerName), on: !isNoop}
}

// startConsumer starts the span of a delivery on subject, a child of the
// header's valid traceparent (with its tracestate), else of a new trace.
// The span is named "process <subject>".
func (t tracing) startConsumer(ctx context.Context, subject string, header messages.Header, kind messages.Kind, delivery int) (context.Context, trace.Span) {
	if !t.on {
		return ctx, notTraced
	}
	if tp := header.Get(messages.HeaderTraceparent); messages.ValidTraceparent(tp) {
		carrier := propagation.MapCarrier{"traceparent": tp}
		if state := header.Get("tracestate"); state != "" {
			carrier["tracestate"] = state
		}
		ctx = traceContext.Extract(ctx, carrier)
	}
	ctx, span := t.tracer.Start(ctx, "process "+subject, consumerSpan...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("cckm.kind", string(kind)),
		)
		if delivery > 0 {
			span.SetAttributes(attribute.Int("cckm.delivery", delivery))
		}
	}
	return ctx, span
}

// endRequest records what a request became and ends its span: its ids, the
// result's status and error code, or that it is delivered again. A result
// other than canceled is an error status.
func endRequest(span trace.Span, out *outcome) {
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("cckm.request_id", out.request.RequestID),
			attribute.String("cckm.job_id", out.request.ID),
			attribute.Int("cckm.attempts", out.attempts),
		)
		if out.httpStatus != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", out.httpStatus))
		}
		switch {
		case out.verdict == verdictRetry:
			span.SetAttributes(attribute.Bool("cckm.redelivered", true))
			span.SetStatus(codes.Error, "transient failure: the request is delivered again")
		default:
			span.SetAttributes(attribute.String("cckm.status", string(out.result.Status)))
			if out.result.Error != nil {
				span.SetAttributes(attribute.String("cckm.code", string(out.result.Error.Code)))
				span.SetStatus(codes.Error, string(out.result.Error.Code))
			}
		}
	}
	span.End()
}

// traceparentOf is the W3C traceparent naming span, or "" when it has no
// valid span context (tracing off).
func traceparentOf(span trace.Span) string {
	sc := span.SpanContext()
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// startProducer starts the span of one publish to subject, named
// "send <subject>"; what says which output it is.
func (t tracing) startProducer(ctx context.Context, subject, what string) (context.Context, trace.Span) {
	if !t.on {
		return ctx, notTraced
	}
	ctx, span := t.tracer.Start(ctx, "send "+subject, producerSpan...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("cckm.output", what),
		)
	}
	return ctx, span
}

// endProducer records how a publish went and ends its span. The error
// status says whether the failure was permanent, never the error's text.
func endProducer(span trace.Span, tries int, err error) {
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("cckm.tries", tries))
		switch {
		case isPermanent(err):
			span.SetStatus(codes.Error, "the message cannot be published as it is")
		case err != nil:
			span.SetStatus(codes.Error, "not published in time")
		}
	}
	span.End()
}
