package cckmclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// Job is a CipherTrust Manager job as a cancel or GET call returned it.
type Job struct {
	// Raw is the job object exactly as CipherTrust Manager sent it (without
	// the documentation's {"application/json": ...} wrapper, if present).
	Raw json.RawMessage
	// ID, OverallStatus and Abort are decoded from Raw.
	ID            string
	OverallStatus string
	Abort         bool
}

// Terminal reports whether OverallStatus says the job has ended:
// "completed" or "failed", in any case.
func (j *Job) Terminal() bool {
	switch strings.ToLower(strings.TrimSpace(j.OverallStatus)) {
	case "completed", "failed":
		return true
	}
	return false
}

// errNotAnObject says that a 2xx body held no job object.
var errNotAnObject = errors.New("response is not a JSON object")

// docWrapperKey is the key the CCKM documentation wraps some examples in.
const docWrapperKey = "application/json"

// jobFields are the raw values of the fields DecodeJob reads; nil when
// absent.
type jobFields struct {
	id, overallStatus, abort, docWrapper []byte
}

// DecodeJob decodes a job from a response body. It keeps the object's raw
// bytes (compacted if they hold line breaks, so that a result stays one
// line), reads abort and overall_status leniently (abort counts only as the
// JSON value true), and unwraps {"application/json": {...}}. Keys match
// exactly, as in a map; of a repeated key the last counts.
//
// It runs once per request, so it does not build the object: json.Valid
// checks the body, then readJobFields walks the top level for the four
// keys (with encoding/json, decoding was 10% of the worker's CPU at 0 ms
// CM latency). FuzzDecodeJobMatchesMap checks it against decoding into a
// map[string]json.RawMessage.
func DecodeJob(body []byte) (*Job, error) {
	raw := bytes.TrimSpace(body)
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return nil, errNotAnObject
	}
	fields := readJobFields(raw)
	if fields.docWrapper != nil && fields.id == nil && fields.abort == nil && fields.overallStatus == nil {
		if inner := fields.docWrapper; inner[0] == '{' {
			raw = inner
			fields = readJobFields(raw)
		}
	}
	if bytes.ContainsAny(raw, "\n\r") {
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err == nil {
			raw = compact.Bytes()
		}
	}
	return &Job{
		Raw:           json.RawMessage(raw),
		ID:            jsonString(fields.id),
		OverallStatus: jsonString(fields.overallStatus),
		Abort:         string(fields.abort) == "true",
	}, nil
}

// readJobFields finds the job's fields among the top-level members of obj,
// which must be a valid JSON object (json.Valid).
func readJobFields(obj []byte) jobFields {
	var f jobFields
	i := skipSpace(obj, 1) // past '{'
	for i < len(obj) && obj[i] == '"' {
		keyEnd := skipString(obj, i)
		key := obj[i+1 : keyEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			key = []byte(jsonString(obj[i:keyEnd]))
		}
		i = skipSpace(obj, keyEnd)
		i = skipSpace(obj, i+1) // past ':'
		valueEnd := skipValue(obj, i)
		value := obj[i:valueEnd]
		switch string(key) {
		case "id":
			f.id = value
		case "overall_status":
			f.overallStatus = value
		case "abort":
			f.abort = value
		case docWrapperKey:
			f.docWrapper = value
		}
		i = skipSpace(obj, valueEnd)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return f
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string that starts at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index just past the valid JSON value at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // a number, true, false or null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// jsonString is the string a JSON value holds, or "" if it is not a
// string. A string without escapes that is valid UTF-8 is its own bytes.
func jsonString(value []byte) string {
	if len(value) < 2 || value[0] != '"' {
		return ""
	}
	inner := value[1 : len(value)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	_ = json.Unmarshal(value, &s)
	return s
}
