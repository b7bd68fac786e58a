package worker

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
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

// knownTraceFlags are the trace flags W3C defines (sampled, random); a
// forwarder clears the others, which are reserved.
const knownTraceFlags = trace.FlagsSampled | trace.FlagsRandom

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
		ctx = trace.ContextWithRemoteSpanContext(ctx, remoteParent(tp, header.Get("tracestate")))
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

// remoteParent is the span context of tp, a traceparent that
// messages.ValidTraceparent accepts, with the tracestate state where that
// is valid W3C (else none). It is read here rather than by the SDK's
// propagator, which drops a traceparent whose reserved flag bits are set:
// the request's trace would be lost, though the worker takes the header as
// valid and forwards it when tracing is off. The reserved bits are cleared.
func remoteParent(tp, state string) trace.SpanContext {
	var scc trace.SpanContextConfig
	var flags [1]byte
	// ValidTraceparent checked the lengths and the hex digits.
	_, _ = hex.Decode(scc.TraceID[:], []byte(tp[3:35]))
	_, _ = hex.Decode(scc.SpanID[:], []byte(tp[36:52]))
	_, _ = hex.Decode(flags[:], []byte(tp[53:55]))
	scc.TraceFlags = trace.TraceFlags(flags[0]) & knownTraceFlags
	scc.TraceState, _ = trace.ParseTraceState(state) // an invalid one is dropped, never the parent
	scc.Remote = true
	return trace.NewSpanContext(scc)
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
