package messages

import "strings"

// CloudEvents 1.0 attributes of results and settled events, carried as
// NATS headers in binary content mode (the CloudEvents NATS protocol
// binding): one ce-<attribute> header each, the JSON payload unchanged, so
// that a pipeline built on a CloudEvents SDK reads every result as an
// event.
const (
	// CloudEventSource is the ce-source of every event.
	CloudEventSource = "cckm-cancel-worker"
	// CloudEventTypeResult and CloudEventTypeSettled are the ce-type of a
	// result and of a settled event.
	CloudEventTypeResult  = "com.github.cckm.cancel.result"
	CloudEventTypeSettled = "com.github.cckm.cancel.settled"
	// cloudEventPrefix begins every attribute header.
	cloudEventPrefix = "ce-"
)

// SetCloudEvent sets the CloudEvents attributes of event on header: id is
// the event's Nats-Msg-Id, the time its completed_at, the subject its job
// id, and traceparent (where the request had one) the distributed tracing
// extension. Values are percent-encoded as the binding asks.
func SetCloudEvent(header map[string][]string, event *Result, id, traceparent string) {
	eventType := CloudEventTypeResult
	if event.Settled != nil {
		eventType = CloudEventTypeSettled
	}
	set := func(name, value string) { header[cloudEventPrefix+name] = []string{percentEncode(value)} }
	set("specversion", "1.0")
	set("id", id)
	set("source", CloudEventSource)
	set("type", eventType)
	if event.ID != "" {
		set("subject", event.ID)
	}
	set("time", event.CompletedAt.String())
	set("datacontenttype", "application/json")
	if traceparent != "" {
		set("traceparent", traceparent)
	}
}

// percentEncode encodes, as the CloudEvents bindings ask of a header value,
// every byte outside printable ASCII, the space, '"' and '%'.
func percentEncode(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&0xF])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
