package messages

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Request is a parsed, valid request to cancel one job.
type Request struct {
	// Kind is taken from the subject the request arrived on.
	Kind Kind
	// ID is the job id exactly as the producer gave it.
	ID string
	// RequestID is echoed in every result for this request.
	RequestID string
	// Follow asks the worker to follow the job to its end (a settled event).
	Follow bool
	// Traceparent is the W3C trace context, if the request carried one.
	Traceparent string
	// ReplyTo is the Cckm-Reply-To header, if any.
	ReplyTo string
}

// CanonicalID is the job id in lower case, the form used in URLs.
func (r Request) CanonicalID() string { return strings.ToLower(r.ID) }

// RequestError says why a payload is not a valid request. ParseRequest
// returns it together with what could be read of the request, so that a
// rejected result can still echo the id and request_id.
type RequestError struct {
	Reason string
}

func (e *RequestError) Error() string { return "invalid request: " + e.Reason }

// Header is the read side of nats.Header and http.Header. Lookups ignore
// the case of the name, because producers spell headers many ways.
type Header map[string][]string

// Get returns the first value of the named header, ignoring case.
func (h Header) Get(name string) string {
	if v, ok := h[name]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

// Limits on what a request may carry.
const (
	// MaxRequestIDLength bounds request_id, which travels in headers.
	MaxRequestIDLength = 256
	// maxEchoedIDLength bounds an invalid id that a rejected result echoes.
	maxEchoedIDLength = 128
)

// jsonRequest is the JSON form of a request. Fields are raw so that a value
// of the wrong type gets a clear error of its own.
type jsonRequest struct {
	ID        json.RawMessage
	RequestID json.RawMessage
	Follow    json.RawMessage
}

// decodeJSONRequest reads the request's fields from a JSON object. Keys
// match exactly: encoding/json would also take "ID" or "Follow" for a
// field, and a field spelt so is one the producer meant for someone else,
// to be ignored like any unknown field. Of a repeated key the last counts.
func decodeJSONRequest(payload []byte) (jsonRequest, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return jsonRequest{}, err
	}
	return jsonRequest{ID: fields["id"], RequestID: fields["request_id"], Follow: fields["follow"]}, nil
}

// ParseRequest turns a payload and its headers into a Request for kind. The
// payload is a JSON object {"id": ..., "request_id": ..., "follow": ...}
// (unknown fields ignored) or the bare id as text (surrounding white space
// ignored), at most MaxRequestSize bytes. request_id is the payload's, else
// the Nats-Msg-Id header, else defaultRequestID (a stable one such as
// DerivedRequestID, so that every delivery of a message has the same), else
// a new random one. A traceparent that is not valid W3C is dropped; a
// Cckm-Reply-To that is not a literal subject the worker may answer on
// rejects the request, and is dropped too, so that nothing is sent there.
//
// On a bad payload it returns a *RequestError and a Request holding what
// could be read: the kind, the id as given where there was one (empty when
// the payload could not be parsed), and always a request_id.
func ParseRequest(kind Kind, payload []byte, header Header, defaultRequestID string) (Request, error) {
	req := Request{Kind: kind}
	if tp := header.Get(HeaderTraceparent); ValidTraceparent(tp) {
		req.Traceparent = tp
	}
	var replyErr error
	if replyTo := header.Get(HeaderReplyTo); replyTo != "" {
		if replyErr = CheckReplySubject(replyTo); replyErr == nil {
			req.ReplyTo = replyTo
		}
	}
	if len(payload) > MaxRequestSize {
		req.RequestID = chooseRequestID("", header.Get(HeaderMsgID), defaultRequestID)
		return req, &RequestError{Reason: fmt.Sprintf(
			"payload of %d bytes is over the limit of %d bytes", len(payload), MaxRequestSize)}
	}
	payloadRequestID, err := parsePayload(&req, payload)
	req.RequestID = chooseRequestID(payloadRequestID, header.Get(HeaderMsgID), defaultRequestID)
	if err != nil {
		return req, err
	}
	if replyErr != nil {
		return req, &RequestError{Reason: replyErr.Error()}
	}
	if !kind.Valid() {
		return req, &RequestError{Reason: fmt.Sprintf("unknown kind %q", kind)}
	}
	if !ValidRequestID(payloadRequestID) && payloadRequestID != "" {
		return req, &RequestError{Reason: fmt.Sprintf(
			"request_id must be 1 to %d printable characters", MaxRequestIDLength)}
	}
	if !IsUUID(req.ID) {
		return req, &RequestError{Reason: fmt.Sprintf(
			"id %q is not a UUID (8-4-4-4-12 hexadecimal digits)", req.ID)}
	}
	return req, nil
}

// parsePayload fills req.ID and req.Follow from payload and returns the
// payload's request_id, unchecked.
func parsePayload(req *Request, payload []byte) (string, error) {
	trimmed := bytes.TrimSpace(payload)
	switch {
	case len(trimmed) == 0:
		return "", &RequestError{Reason: "empty payload: send a job id or {\"id\": \"<uuid>\"}"}
	case trimmed[0] == '{':
		return parseJSONPayload(req, trimmed)
	case trimmed[0] == '"':
		var id string
		if err := json.Unmarshal(trimmed, &id); err != nil {
			return "", &RequestError{Reason: "payload is not valid JSON: " + jsonReason(err)}
		}
		req.ID = echoable(id)
		return "", nil
	default:
		req.ID = echoable(string(trimmed))
		if req.ID == "" {
			return "", &RequestError{Reason: "payload is neither a JSON object nor a job id"}
		}
		return "", nil
	}
}

func parseJSONPayload(req *Request, payload []byte) (string, error) {
	body, err := decodeJSONRequest(payload)
	if err != nil {
		return "", &RequestError{Reason: "payload is not valid JSON: " + jsonReason(err)}
	}
	// The id is read first, so that a request rejected for another field
	// still echoes it.
	var id string
	var idErr error
	switch {
	case !isPresent(body.ID):
		idErr = &RequestError{Reason: "missing field \"id\""}
	case json.Unmarshal(body.ID, &id) != nil:
		idErr = &RequestError{Reason: "id must be a string"}
	default:
		req.ID = echoable(id)
	}
	var requestID string
	if isPresent(body.RequestID) {
		if err := json.Unmarshal(body.RequestID, &requestID); err != nil {
			return "", &RequestError{Reason: "request_id must be a string"}
		}
	}
	if isPresent(body.Follow) {
		if err := json.Unmarshal(body.Follow, &req.Follow); err != nil {
			return requestID, &RequestError{Reason: "follow must be true or false"}
		}
	}
	return requestID, idErr
}

// isPresent reports whether a raw JSON field was given and is not null.
func isPresent(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// jsonReason shortens a decoding error to its cause.
func jsonReason(err error) string {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Sprintf("%s at byte %d", syntax.Error(), syntax.Offset)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return "expected a JSON object"
	}
	return err.Error()
}

// echoable returns id if it is short, valid UTF-8 without control
// characters, so that a result may repeat it; otherwise "".
func echoable(id string) string {
	if len(id) > maxEchoedIDLength || !utf8.ValidString(id) {
		return ""
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return ""
		}
	}
	return id
}

// chooseRequestID picks the request_id: the payload's, else the
// Nats-Msg-Id header, else the default, else a new one. A value that could
// not travel in a header is passed over.
func chooseRequestID(fromPayload, fromHeader, fallback string) string {
	if ValidRequestID(fromPayload) {
		return fromPayload
	}
	if ValidRequestID(fromHeader) {
		return fromHeader
	}
	if ValidRequestID(fallback) {
		return fallback
	}
	return NewRequestID()
}

// ValidRequestID reports whether s can serve as a request_id: 1 to
// MaxRequestIDLength printable characters, no white space at either end.
func ValidRequestID(s string) bool {
	if s == "" || len(s) > MaxRequestIDLength || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// IsUUID reports whether s is a UUID in its 8-4-4-4-12 hexadecimal form,
// in either case.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// NewRequestID returns a random version 4 UUID.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b[:])
}

// formatUUID writes 16 bytes in the 8-4-4-4-12 hexadecimal form. It runs
// for every request without a request_id: no fmt.
func formatUUID(b []byte) string {
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}
