package messages

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the result's JSON, field for field in the published
// order and as encoding/json would write it, to b. It is the worker's hot path: it
// writes Job as it is instead of re-validating and compacting it, so Job
// must be valid JSON (cckmclient.DecodeJob's Raw always is). Strings are
// escaped as encoding/json escapes them.
func (r *Result) AppendJSON(b []byte) []byte {
	b = append(b, `{"request_id":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(r.Kind))
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"status":`...)
	b = appendString(b, string(r.Status))
	b = append(b, `,"abort":`...)
	b = strconv.AppendBool(b, r.Abort)
	if r.OverallStatus != "" {
		b = append(b, `,"overall_status":`...)
		b = appendString(b, r.OverallStatus)
	}
	b = append(b, `,"http_status":`...)
	b = strconv.AppendInt(b, int64(r.HTTPStatus), 10)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	if len(r.Job) > 0 {
		b = append(b, `,"job":`...)
		b = append(b, r.Job...)
	}
	if r.JobOmitted {
		b = append(b, `,"job_omitted":true`...)
	}
	if r.Error != nil {
		b = append(b, `,"error":{"code":`...)
		b = appendString(b, string(r.Error.Code))
		b = append(b, `,"message":`...)
		b = appendString(b, r.Error.Message)
		b = append(b, `,"retryable":`...)
		b = strconv.AppendBool(b, r.Error.Retryable)
		b = append(b, '}')
	}
	b = append(b, `,"received_at":"`...)
	b = r.ReceivedAt.UTC().AppendFormat(b, timestampLayout)
	b = append(b, `","completed_at":"`...)
	b = r.CompletedAt.UTC().AppendFormat(b, timestampLayout)
	b = append(b, '"')
	if r.Settled != nil {
		b = append(b, `,"settled":`...)
		b = strconv.AppendBool(b, *r.Settled)
	}
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler with AppendJSON, after checking
// that Job is valid JSON.
func (r Result) MarshalJSON() ([]byte, error) {
	if len(r.Job) > 0 && !json.Valid(r.Job) {
		return nil, &json.UnsupportedValueError{Str: "result job is not valid JSON"}
	}
	return r.AppendJSON(make([]byte, 0, 512+len(r.Job))), nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// by default: quotes, backslashes and control characters, <, > and & (as
// \u003c and so on), U+2028 and U+2029, and invalid UTF-8 as \ufffd.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
