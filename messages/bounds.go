package messages

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds on what enters and leaves the worker. Each keeps one input from
// growing what the worker holds or publishes past what NATS accepts.
const (
	// MaxRequestSize bounds a request's payload. An id and a request_id fit
	// in a few hundred bytes; 64 KiB leaves room for fields the worker
	// ignores while keeping the memory of a full pull batch small. The
	// request stream is created with this max_msg_size, and in core mode a
	// larger payload is rejected.
	MaxRequestSize = 64 << 10
	// MaxJobSize bounds the job object a result carries. CipherTrust
	// Manager's job lists every key or domain it touched, so a large job can
	// pass the server's max payload (1 MiB by default); above this the job is
	// left out of the result (job_omitted: true), abort and overall_status
	// still read from it.
	MaxJobSize = 256 << 10
	// MaxErrorMessage bounds the error text a result, a settled event or a
	// dead-letter header carries: CipherTrust Manager's text can be as long
	// as its body, and a NATS header value must stay well under 64 KiB.
	MaxErrorMessage = 1 << 10
	// MaxReplySubjectLength bounds Cckm-Reply-To.
	MaxReplySubjectLength = 256
	// MaxOverallStatus bounds the overall_status a result or settled event
	// carries. CipherTrust Manager's statuses are a word or two, but the
	// value is read from its answer: unbounded, one long enough would make
	// the event too large to publish even without its job.
	MaxOverallStatus = 256
)

// ellipsis ends a message that was cut.
const ellipsis = "…"

// TruncateMessage returns s cut to at most MaxErrorMessage bytes, ending
// with "…" when cut, and never splitting a UTF-8 sequence.
func TruncateMessage(s string) string { return truncate(s, MaxErrorMessage) }

// TruncateOverallStatus returns s cut to at most MaxOverallStatus bytes,
// ending with "…" when cut, and never splitting a UTF-8 sequence.
func TruncateOverallStatus(s string) string { return truncate(s, MaxOverallStatus) }

// truncate cuts s to at most limit bytes, ending with "…" when cut.
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// ValidTraceparent reports whether tp is a W3C trace context header of
// version 00: 00-<32 lower-case hex, not all 0>-<16 lower-case hex, not all
// 0>-<2 lower-case hex>. Anything else is ignored, never forwarded.
func ValidTraceparent(tp string) bool {
	if len(tp) != 55 || tp[0:3] != "00-" || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	traceID, spanID, flags := tp[3:35], tp[36:52], tp[53:55]
	return isLowerHex(traceID) && isLowerHex(spanID) && isLowerHex(flags) &&
		strings.Trim(traceID, "0") != "" && strings.Trim(spanID, "0") != ""
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckReplySubject returns why subject cannot be a Cckm-Reply-To, or nil:
// it must be a literal subject (no wildcard, no empty token, no white
// space), at most MaxReplySubjectLength bytes, not a system subject ($...)
// and not under cckm.cancel. (a result sent there would be taken for a
// request, or stored as one).
func CheckReplySubject(subject string) error {
	return checkReplySubject(HeaderReplyTo, subject)
}

// CheckNATSReplySubject is CheckReplySubject for a request's own NATS
// reply subject, which a core-mode worker answers too: the same rule, for
// a result sent there does the same harm. Its errors name the NATS reply
// subject.
func CheckNATSReplySubject(subject string) error {
	return checkReplySubject("the NATS reply subject", subject)
}

// checkReplySubject checks a reply subject; what names it in the error.
func checkReplySubject(what, subject string) error {
	switch {
	case subject == "":
		return fmt.Errorf("%s is empty", what)
	case len(subject) > MaxReplySubjectLength:
		return fmt.Errorf("%s is longer than %d bytes", what, MaxReplySubjectLength)
	case strings.HasPrefix(subject, "$"):
		return fmt.Errorf("%s %q is a system subject", what, subject)
	case strings.HasPrefix(subject, SubjectPrefix):
		return fmt.Errorf("%s %q is under %s", what, subject, SubjectPrefix)
	case !utf8.ValidString(subject):
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	for _, token := range strings.Split(subject, ".") {
		if token == "" {
			return fmt.Errorf("%s %q has an empty token", what, subject)
		}
		if token == "*" || token == ">" || strings.ContainsAny(token, "*>") {
			return fmt.Errorf("%s %q has a wildcard", what, subject)
		}
		for _, r := range token {
			if r <= ' ' || r == 0x7f {
				return fmt.Errorf("%s %q has white space or a control character", what, subject)
			}
		}
	}
	return nil
}

// DerivedRequestID is the request_id of a request that names none, derived
// from where the message is stored: the stream, its sequence there and
// the time it was stored. Every delivery of one message gets the same one,
// so a redelivery cannot store a second result under a new name; a stream
// deleted and created again starts its sequences over, but not its times.
// It has the form of a UUID (version 8, variant 10).
func DerivedRequestID(stream string, sequence uint64, stored time.Time) string {
	var tail [16]byte
	binary.BigEndian.PutUint64(tail[:8], sequence)
	binary.BigEndian.PutUint64(tail[8:], uint64(stored.UnixNano()))
	h := sha256.New()
	h.Write([]byte(stream))
	h.Write([]byte{0})
	h.Write(tail[:])
	var sum [sha256.Size]byte
	b := h.Sum(sum[:0])
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b[:16])
}
