package worker

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Black-box checks of the request and result promises, each sentence at
// its exact edge, in both modes: through NATS and the fake CipherTrust
// Manager only.

// sweepAModes are the two delivery modes every promise here holds in.
var sweepAModes = []Mode{ModeJetStream, ModeCore}

// sweepEachMode runs fn as a parallel subtest in each mode, against a fake
// CipherTrust Manager made with opts and a worker in that mode already
// started.
func sweepEachMode(t *testing.T, opts cckmtest.Options, fn func(t *testing.T, mode Mode, env *testEnv)) {
	t.Helper()
	for _, mode := range sweepAModes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, opts)
			env.startWorker(t, testConfig(mode), env.client(t, nil))
			fn(t, mode, env)
		})
	}
}

// sweepASendTimeout bounds the wait for one result.
const sweepASendTimeout = 10 * time.Second

// sendWithHeader sends a request with header as a user would: in
// jetstream mode stored in the stream with the answer on Cckm-Reply-To, in
// core mode as a NATS request. It returns the result and its message.
func (e *testEnv) sendWithHeader(t *testing.T, mode Mode, kind messages.Kind, payload []byte, header nats.Header) (messages.Result, *nats.Msg) {
	t.Helper()
	if header == nil {
		header = nats.Header{}
	}
	var reply *nats.Msg
	if mode == ModeCore {
		var err error
		reply, err = e.nc.RequestMsg(&nats.Msg{Subject: kind.RequestSubject(), Data: payload, Header: header}, sweepASendTimeout)
		require.NoError(t, err)
	} else {
		inbox := nats.NewInbox()
		sub, err := e.nc.SubscribeSync(inbox)
		require.NoError(t, err)
		defer func() { _ = sub.Unsubscribe() }()
		header.Set(messages.HeaderReplyTo, inbox)
		e.publish(t, kind, string(payload), header)
		reply, err = sub.NextMsg(sweepASendTimeout)
		require.NoError(t, err, "no result on Cckm-Reply-To")
	}
	var result messages.Result
	require.NoError(t, json.Unmarshal(reply.Data, &result), string(reply.Data))
	return result, reply
}

// rawFields decodes a result's JSON into its fields, to tell an absent
// field from a zero one.
func rawFields(t *testing.T, data []byte) map[string]json.RawMessage {
	t.Helper()
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &raw), string(data))
	return raw
}

// Every accepted form of a request, as a producer would send it, is
// canceled and echoes the id exactly as given.
func TestSweepAEveryFormOfARequestIsCanceled(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{AnyJob: true}, func(t *testing.T, mode Mode, env *testEnv) {
		for _, tc := range []struct {
			name          string
			payload       func(id string) string
			header        func(n int) nats.Header
			echoed        func(id string) string // the result's id; nil: the id
			wantRequestID func(n int) string     // nil: a generated UUID
		}{
			{name: "an upper-case UUID as the bare id",
				payload: func(id string) string { return strings.ToUpper(id) },
				echoed:  strings.ToUpper},
			{name: "a mixed-case UUID in a JSON object",
				payload: func(id string) string { return `{"id":"` + strings.ToUpper(id[:18]) + id[18:] + `"}` },
				echoed:  func(id string) string { return strings.ToUpper(id[:18]) + id[18:] }},
			{name: "a bare id with white space around it",
				payload: func(id string) string { return " \t\r\n" + id + "\r\n\t " }},
			{name: "a JSON object with unknown fields of every type",
				payload: func(id string) string {
					return `{"x":{"id":"not-a-uuid"},"id":"` + id + `","n":1.5,"l":[1,"a"],"b":false,"z":null}`
				}},
			{name: "a JSON object with white space around it",
				payload: func(id string) string { return "\n  {\"id\": \"" + id + "\"}\n" }},
			{name: "the payload's request_id over Nats-Msg-Id",
				payload:       func(id string) string { return `{"id":"` + id + `","request_id":"ir-payload-` + string(mode) + `"}` },
				header:        func(n int) nats.Header { return nats.Header{messages.HeaderMsgID: {fmt.Sprintf("hdr-%s-%d", mode, n)}} },
				wantRequestID: func(int) string { return "ir-payload-" + string(mode) }},
			{name: "Nats-Msg-Id as the request_id of a bare id",
				payload:       func(id string) string { return id },
				header:        func(n int) nats.Header { return nats.Header{messages.HeaderMsgID: {fmt.Sprintf("hdr-%s-%d", mode, n)}} },
				wantRequestID: func(n int) string { return fmt.Sprintf("hdr-%s-%d", mode, n) }},
			{name: "Nats-Msg-Id as the request_id of a JSON object without one",
				payload:       func(id string) string { return `{"id":"` + id + `","follow":false}` },
				header:        func(n int) nats.Header { return nats.Header{messages.HeaderMsgID: {fmt.Sprintf("hdr-%s-%d", mode, n)}} },
				wantRequestID: func(n int) string { return fmt.Sprintf("hdr-%s-%d", mode, n) }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := messages.NewRequestID()
				var header nats.Header
				n := time.Now().Nanosecond()
				if tc.header != nil {
					header = tc.header(n)
				}
				result, msg := env.sendWithHeader(t, mode, messages.KindBulkJob, []byte(tc.payload(id)), header)
				want := id
				if tc.echoed != nil {
					want = tc.echoed(id)
				}
				assert.Equal(t, want, result.ID, "the id as given")
				assert.Equal(t, messages.StatusCanceled, result.Status, "error: %+v", result.Error)
				assert.Equal(t, 1, result.Attempts)
				if tc.wantRequestID != nil {
					assert.Equal(t, tc.wantRequestID(n), result.RequestID)
				} else {
					assert.True(t, messages.IsUUID(result.RequestID), "a generated request_id, got %q", result.RequestID)
				}
				assert.Equal(t, result.RequestID+".result", msg.Header.Get(messages.HeaderMsgID))
				calls := env.cm.CallsFor(id)
				if assert.Len(t, calls, 1, "one cancel, at the id in lower case") {
					assert.Equal(t, messages.KindBulkJob.Collection()+"/"+id+"/cancel", calls[0].RequestURI)
				}
			})
		}
	})
}

// A request of exactly 64 KiB is taken; one byte more is refused: by the
// stream in jetstream mode, as rejected without a call in core mode.
func TestSweepAThe64KiBPayloadLimitAtItsEdge(t *testing.T) {
	t.Run("jetstream", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		results := env.watchResults(t, messages.SubjectResults)
		env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

		id := messages.NewRequestID()
		exact := paddedRequest(id, "ir-64k", messages.MaxRequestSize)
		require.Len(t, exact, 64<<10)
		_, err := env.js.Publish(t.Context(), messages.SubjectRefresh, exact)
		require.NoError(t, err, "the stream takes a 64 KiB request")
		result, _ := results.next(t)
		assert.Equal(t, "ir-64k", result.RequestID)
		assert.Equal(t, id, result.ID)
		assert.Equal(t, messages.StatusCanceled, result.Status)

		over := paddedRequest(messages.NewRequestID(), "ir-64k-1", messages.MaxRequestSize+1)
		require.Len(t, over, 64<<10+1)
		_, err = env.js.Publish(t.Context(), messages.SubjectRefresh, over)
		require.Error(t, err, "the stream refuses a request one byte over 64 KiB")
	})
	t.Run("core", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		env.startWorker(t, testConfig(ModeCore), env.client(t, nil))

		id := messages.NewRequestID()
		result, _ := env.sendWithHeader(t, ModeCore, messages.KindRefresh, paddedRequest(id, "ir-64k", messages.MaxRequestSize), nil)
		assert.Equal(t, "ir-64k", result.RequestID)
		assert.Equal(t, messages.StatusCanceled, result.Status)

		overID := messages.NewRequestID()
		over := paddedRequest(overID, "ir-64k-1", messages.MaxRequestSize+1)
		result, msg := env.sendWithHeader(t, ModeCore, messages.KindRefresh, over, nil)
		assert.Equal(t, messages.StatusRejected, result.Status)
		if assert.NotNil(t, result.Error) {
			assert.Equal(t, messages.CodeInvalidRequest, result.Error.Code)
			assert.False(t, result.Error.Retryable)
		}
		assert.Equal(t, 0, result.Attempts)
		assert.Equal(t, 0, result.HTTPStatus)
		assert.NotEmpty(t, result.RequestID)
		assert.Equal(t, result.RequestID+".result", msg.Header.Get(messages.HeaderMsgID))
		assert.Empty(t, env.cm.CallsFor(overID), "no call for a payload over 64 KiB")
	})
}

// replySubjectOf returns a literal subject of exactly n bytes under
// prefix.
func replySubjectOf(prefix string, n int) string {
	subject := prefix
	for len(subject) < n {
		subject += "." + strings.Repeat("r", min(16, n-len(subject)-1))
	}
	return subject[:n]
}

// A Cckm-Reply-To of 256 bytes gets the result; one of 257 bytes, or one
// that is not a literal subject, rejects the request, without a call and
// without anything sent there.
func TestSweepACckmReplyToAtItsEdges(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{AnyJob: true}, func(t *testing.T, mode Mode, env *testEnv) {
		results := env.watchResults(t, messages.SubjectResults)

		sendTo := func(t *testing.T, id, replyTo string) {
			t.Helper()
			header := nats.Header{messages.HeaderReplyTo: {replyTo}}
			if mode == ModeCore {
				require.NoError(t, env.nc.PublishMsg(&nats.Msg{Subject: messages.SubjectRefresh, Data: []byte(id), Header: header}))
				return
			}
			env.publish(t, messages.KindRefresh, id, header)
		}

		exact := replySubjectOf("answers256", messages.MaxReplySubjectLength)
		require.Len(t, exact, 256)
		answers := env.watchResults(t, exact)
		id := messages.NewRequestID()
		sendTo(t, id, exact)
		answer, _ := answers.next(t)
		result, _ := results.next(t)
		assert.Equal(t, id, answer.ID)
		assert.Equal(t, messages.StatusCanceled, answer.Status)
		assert.Equal(t, result, answer, "the same result on the 256-byte reply subject")

		for _, tc := range []struct{ name, replyTo, watch string }{
			{"257 bytes", replySubjectOf("answers257", messages.MaxReplySubjectLength+1), "answers257.>"},
			{"a full wildcard", "answersgt.>", "answersgt.>"},
			{"a wildcard inside a token", "answersin.a*b", "answersin.>"},
			{"a leading dot", ".answersdot", ""},
			{"a trailing dot", "answerstrail.", "answerstrail.>"},
			{"a space", "answersspace.a b", "answersspace.>"},
			{"a tab", "answerstab.a\tb", "answerstab.>"},
			{"a system subject", "$SYS.REQ.SERVER.PING", ""},
			{"a subject under cckm.cancel.", "cckm.cancel.replies", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var sub *nats.Subscription
				if tc.watch != "" {
					var err error
					sub, err = env.nc.SubscribeSync(tc.watch)
					require.NoError(t, err)
					require.NoError(t, env.nc.Flush())
					defer func() { _ = sub.Unsubscribe() }()
				}
				id := messages.NewRequestID()
				sendTo(t, id, tc.replyTo)
				result, _ := results.next(t)
				assert.Equal(t, id, result.ID)
				assert.Equal(t, messages.StatusRejected, result.Status)
				if assert.NotNil(t, result.Error) {
					assert.Equal(t, messages.CodeInvalidRequest, result.Error.Code)
				}
				assert.Equal(t, 0, result.Attempts)
				assert.Empty(t, env.cm.CallsFor(id), "no call")
				if sub != nil {
					// The result was published before this poll: anything sent
					// to the reply subject would be here by now.
					require.NoError(t, env.nc.Flush())
					msg, err := sub.NextMsg(100 * time.Millisecond)
					assert.Error(t, err, "nothing is sent to %q, got %v", tc.replyTo, msg)
				}
			})
		}
	})
}

// timestampPattern is RFC 3339 with nine digits of nanoseconds, in UTC.
var timestampPattern = regexp.MustCompile(`^"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z"$`)

// The fields of a result as the contract writes them: which are always
// there, which are omitted, and their values when nothing was called or
// no job came back.
func TestSweepAResultFieldsPresentAndOmitted(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{}, func(t *testing.T, mode Mode, env *testEnv) {
		for _, tc := range []struct {
			name     string
			setup    func(id string)
			payload  func(id string) string
			want     map[string]string // field: its exact JSON
			omitted  []string
			errCode  messages.ErrorCode
			retryErr bool
		}{
			{
				name:    "a canceled job",
				setup:   func(id string) { env.cm.AddJob(cckmtest.Refresh, id) },
				want:    map[string]string{"kind": `"refresh"`, "status": `"canceled"`, "abort": "true", "overall_status": `"in progress"`, "http_status": "200", "attempts": "1"},
				omitted: []string{"error", "job_omitted", "settled"},
			},
			{
				name:    "a rejected id",
				payload: func(string) string { return "not-a-uuid" },
				want:    map[string]string{"id": `"not-a-uuid"`, "status": `"rejected"`, "abort": "false", "http_status": "0", "attempts": "0"},
				omitted: []string{"overall_status", "job", "job_omitted", "settled"},
				errCode: messages.CodeInvalidRequest,
			},
			{
				name:    "a rejected payload that is not JSON",
				payload: func(string) string { return `{"id":` },
				want:    map[string]string{"id": `""`, "status": `"rejected"`, "abort": "false", "http_status": "0", "attempts": "0"},
				omitted: []string{"overall_status", "job", "job_omitted", "settled"},
				errCode: messages.CodeInvalidRequest,
			},
			{
				name:    "a rejected id of the wrong type",
				payload: func(string) string { return `{"id":42}` },
				want:    map[string]string{"status": `"rejected"`, "abort": "false", "http_status": "0", "attempts": "0"},
				omitted: []string{"overall_status", "job", "job_omitted", "settled"},
				errCode: messages.CodeInvalidRequest,
			},
			{
				name:    "an unknown job",
				want:    map[string]string{"status": `"failed"`, "abort": "false", "http_status": "404", "attempts": "1"},
				omitted: []string{"overall_status", "job", "job_omitted", "settled"},
				errCode: messages.CodeNotFound,
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := messages.NewRequestID()
				if tc.setup != nil {
					tc.setup(id)
				}
				payload := id
				if tc.payload != nil {
					payload = tc.payload(id)
				}
				_, msg := env.sendWithHeader(t, mode, messages.KindRefresh, []byte(payload), nil)
				raw := rawFields(t, msg.Data)
				for _, field := range []string{"request_id", "kind", "id", "status", "abort", "http_status", "attempts", "received_at", "completed_at"} {
					assert.Contains(t, raw, field, "always present")
				}
				for field, want := range tc.want {
					assert.Equal(t, want, string(raw[field]), field)
				}
				for _, field := range tc.omitted {
					assert.NotContains(t, raw, field, "omitted")
				}
				for _, field := range []string{"received_at", "completed_at"} {
					assert.Regexp(t, timestampPattern, string(raw[field]), field)
				}
				if tc.errCode == "" {
					return
				}
				var e map[string]json.RawMessage
				require.NoError(t, json.Unmarshal(raw["error"], &e))
				assert.Equal(t, `"`+string(tc.errCode)+`"`, string(e["code"]))
				assert.Equal(t, fmt.Sprint(tc.retryErr), string(e["retryable"]))
				var message string
				require.NoError(t, json.Unmarshal(e["message"], &message))
				assert.NotEmpty(t, message)
				assert.Len(t, e, 3, "code, message and retryable")
			})
		}
	})
}

// jobBodyOf is a running job object of exactly size bytes, abort true.
func jobBodyOf(id string, size int) string {
	head := `{"id":"` + id + `","abort":true,"overall_status":"in_progress","padding":"`
	return head + strings.Repeat("p", size-len(head)-2) + `"}`
}

// A job of exactly 256 KiB is carried; one byte more is left out with
// job_omitted, abort and overall_status still read from it.
func TestSweepAThe256KiBJobLimitAtItsEdge(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{}, func(t *testing.T, mode Mode, env *testEnv) {

		id := messages.NewRequestID()
		body := jobBodyOf(id, messages.MaxJobSize)
		require.Len(t, body, 256<<10)
		env.cm.Script(id, cckmtest.Step{Status: 200, Body: body})
		result, msg := env.sendWithHeader(t, mode, messages.KindBulkJob, []byte(id), nil)
		raw := rawFields(t, msg.Data)
		assert.Equal(t, messages.StatusCanceled, result.Status)
		assert.Equal(t, body, string(raw["job"]), "the job as returned, unchanged")
		assert.NotContains(t, raw, "job_omitted")

		id = messages.NewRequestID()
		env.cm.Script(id, cckmtest.Step{Status: 200, Body: jobBodyOf(id, messages.MaxJobSize+1)})
		result, msg = env.sendWithHeader(t, mode, messages.KindBulkJob, []byte(id), nil)
		raw = rawFields(t, msg.Data)
		assert.Equal(t, messages.StatusCanceled, result.Status)
		assert.NotContains(t, raw, "job")
		assert.Equal(t, "true", string(raw["job_omitted"]))
		assert.Equal(t, "true", string(raw["abort"]), "abort read from the job left out")
		assert.Equal(t, `"in_progress"`, string(raw["overall_status"]), "overall_status read from the job left out")
	})
}

// CipherTrust Manager's own error text reaches the result whole up to
// 1 KiB, and is cut with … above.
func TestSweepAErrorTextUpTo1KiBIsWholeAndCutAbove(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{}, func(t *testing.T, mode Mode, env *testEnv) {
		for _, tc := range []struct {
			name    string
			message string
			want    string
		}{
			{"exactly 1 KiB", strings.Repeat("m", 1024), strings.Repeat("m", 1024)},
			{"1 KiB and a byte", strings.Repeat("m", 1025), strings.Repeat("m", 1024-len("…")) + "…"},
			{"multi-byte text over 1 KiB", strings.Repeat("é", 600), strings.Repeat("é", 510) + "…"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := messages.NewRequestID()
				body, err := json.Marshal(map[string]any{"code": 9, "message": tc.message})
				require.NoError(t, err)
				env.cm.Script(id, cckmtest.Step{Status: 422, Body: string(body)})
				result, _ := env.sendWithHeader(t, mode, messages.KindRefresh, []byte(id), nil)
				require.NotNil(t, result.Error)
				assert.Equal(t, messages.CodeClientError, result.Error.Code)
				assert.Equal(t, tc.want, result.Error.Message)
				assert.LessOrEqual(t, len(result.Error.Message), 1024)
			})
		}
	})
}

// Each HTTP status CipherTrust Manager may answer a cancel with becomes
// the contract's error code, with http_status the status received.
func TestSweepAEveryStatusGetsItsErrorCode(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{}, func(t *testing.T, mode Mode, env *testEnv) {
		for _, tc := range []struct {
			status    int
			code      messages.ErrorCode
			retryable bool
		}{
			{400, messages.CodeClientError, false},
			{403, messages.CodeForbidden, false},
			{404, messages.CodeNotFound, false},
			{405, messages.CodeClientError, false},
			{409, messages.CodeConflict, false},
			{410, messages.CodeClientError, false},
			{422, messages.CodeClientError, false},
			{500, messages.CodeServerError, true},
			{501, messages.CodeServerError, false},
			{502, messages.CodeServerError, true},
			{504, messages.CodeServerError, true},
		} {
			t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
				id := messages.NewRequestID()
				env.cm.Script(id, repeatStep(cckmtest.Step{Status: tc.status}, 10)...)
				result, msg := env.sendWithHeader(t, mode, messages.KindRefresh, []byte(id), nil)
				assert.Equal(t, messages.StatusFailed, result.Status)
				assert.Equal(t, tc.status, result.HTTPStatus)
				if assert.NotNil(t, result.Error) {
					assert.Equal(t, tc.code, result.Error.Code)
					assert.Equal(t, tc.retryable, result.Error.Retryable)
				}
				assert.False(t, result.Abort)
				assert.NotContains(t, rawFields(t, msg.Data), "overall_status")
			})
		}
	})
}

// CloudEvents attributes hold in core mode too, on the reply as on the
// result subject, for rejected results, and for a result stored under a
// distinct Nats-Msg-Id.
func TestSweepACloudEventsInCoreModeAndOnEveryCopy(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	results := env.watchResults(t, messages.SubjectResults)
	env.startWorker(t, testConfig(ModeCore), env.client(t, nil))

	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	check := func(t *testing.T, msg *nats.Msg, jobID string) {
		t.Helper()
		h := msg.Header
		raw := rawFields(t, msg.Data)
		var completedAt string
		require.NoError(t, json.Unmarshal(raw["completed_at"], &completedAt))
		assert.Equal(t, "1.0", h.Get("ce-specversion"))
		assert.Equal(t, h.Get(messages.HeaderMsgID), h.Get("ce-id"), "ce-id is the event's Nats-Msg-Id")
		assert.Equal(t, "cckm-cancel-worker", h.Get("ce-source"))
		assert.Equal(t, "com.github.cckm.cancel.result", h.Get("ce-type"))
		assert.Equal(t, jobID, h.Get("ce-subject"))
		assert.Equal(t, completedAt, h.Get("ce-time"), "ce-time is completed_at")
		assert.Equal(t, "application/json", h.Get("ce-datacontenttype"))
	}

	for i, payload := range []func(id string) string{
		func(id string) string { return `{"id":"` + id + `","request_id":"ce-shared"}` },
		func(id string) string { return `{"id":"` + id + `","request_id":"ce-shared"}` },
		func(string) string { return "not-a-uuid" },
	} {
		id := messages.NewRequestID()
		reply, err := env.nc.RequestMsg(&nats.Msg{Subject: messages.Kind("aws-sync").RequestSubject(), Data: []byte(payload(id)),
			Header: nats.Header{messages.HeaderTraceparent: {tp}}}, sweepASendTimeout)
		require.NoError(t, err)
		// A request sharing a request_id is published twice on the result
		// subject: once refused by the results stream as a duplicate, then
		// stored under its own id, the one the reply carries.
		_, published := results.next(t)
		if i == 1 && published.Header.Get(messages.HeaderMsgID) != reply.Header.Get(messages.HeaderMsgID) {
			check(t, published, id)
			_, published = results.next(t)
		}
		jobID := id
		if i == 2 {
			jobID = "not-a-uuid"
		}
		check(t, reply, jobID)
		check(t, published, jobID)
		assert.Equal(t, published.Header.Get(messages.HeaderMsgID), reply.Header.Get(messages.HeaderMsgID), "the same event")
		assert.Equal(t, string(published.Data), string(reply.Data))
		assert.Equal(t, tp, reply.Header.Get("ce-traceparent"))
		if i == 1 {
			msgID := published.Header.Get(messages.HeaderMsgID)
			assert.True(t, strings.HasPrefix(msgID, "ce-shared.") && strings.HasSuffix(msgID, ".result") && msgID != "ce-shared.result",
				"the second request sharing a request_id is stored under its own id, got %q", msgID)
		}
	}
}

// A JSON request's fields are "id", "request_id" and "follow" exactly: a
// field spelt in another case is an unknown field, and ignored.
func TestSweepAFieldsSpeltInAnotherCaseAreUnknownAndIgnored(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{AnyJob: true}, func(t *testing.T, mode Mode, env *testEnv) {
		for _, tc := range []struct {
			name    string
			payload func(id string) string
			status  messages.Status
			echoed  func(id string) string // nil: the id
		}{
			{"Follow of another type", func(id string) string { return `{"id":"` + id + `","Follow":"yes"}` },
				messages.StatusCanceled, nil},
			{"Request_ID", func(id string) string { return `{"id":"` + id + `","Request_ID":"ir-case"}` },
				messages.StatusCanceled, nil},
			{"ID after id", func(id string) string { return `{"id":"` + id + `","ID":"not-a-uuid"}` },
				messages.StatusCanceled, nil},
			{"ID alone", func(id string) string { return `{"ID":"` + id + `"}` },
				messages.StatusRejected, func(string) string { return "" }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := messages.NewRequestID()
				result, _ := env.sendWithHeader(t, mode, messages.KindRefresh, []byte(tc.payload(id)), nil)
				assert.Equal(t, tc.status, result.Status, "error: %+v", result.Error)
				want := id
				if tc.echoed != nil {
					want = tc.echoed(id)
				}
				assert.Equal(t, want, result.ID)
				assert.NotEqual(t, "ir-case", result.RequestID, "Request_ID is not request_id")
				if tc.status == messages.StatusRejected {
					assert.Empty(t, env.cm.CallsFor(id), "no call")
					if assert.NotNil(t, result.Error) {
						assert.Contains(t, result.Error.Message, `missing field "id"`)
					}
				}
			})
		}
	})
}

// A JSON request rejected for another field still echoes the id it gave:
// the id is empty only when the payload could not be parsed.
func TestSweepARejectedForAnotherFieldStillEchoesTheID(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{AnyJob: true}, func(t *testing.T, mode Mode, env *testEnv) {
		for _, tc := range []struct {
			name    string
			payload func(id string) string
		}{
			{"follow not a boolean", func(id string) string { return `{"id":"` + id + `","follow":"yes"}` }},
			{"request_id not a string", func(id string) string { return `{"id":"` + id + `","request_id":42}` }},
			{"request_id too long", func(id string) string {
				return `{"id":"` + id + `","request_id":"` + strings.Repeat("r", messages.MaxRequestIDLength+1) + `"}`
			}},
			{"follow before the id", func(id string) string { return `{"follow":1,"id":"` + id + `"}` }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := messages.NewRequestID()
				result, _ := env.sendWithHeader(t, mode, messages.KindRefresh, []byte(tc.payload(id)), nil)
				assert.Equal(t, messages.StatusRejected, result.Status)
				assert.Equal(t, id, result.ID, "the id as given")
				if assert.NotNil(t, result.Error) {
					assert.Equal(t, messages.CodeInvalidRequest, result.Error.Code)
				}
				assert.Empty(t, env.cm.CallsFor(id), "no call")
			})
		}
	})
}

// A valid traceparent reaches the HTTP call and the result in both modes;
// one that is not valid W3C reaches neither, and the cancel is made all
// the same.
func TestSweepATraceparentInBothModes(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sweepEachMode(t, cckmtest.Options{AnyJob: true}, func(t *testing.T, mode Mode, env *testEnv) {
		for _, tc := range []struct {
			name, value string
			forwarded   bool
		}{
			{"valid", valid, true},
			{"a span id of zeros", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
			{"a trace id of zeros", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
			{"too short", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false},
			{"not hex", "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01", false},
			{"no dashes", "004bf92f3577b34da6a3ce929d0e0e4736000f067aa0ba902b7001", false},
			{"garbage", "hello", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := messages.NewRequestID()
				result, msg := env.sendWithHeader(t, mode, messages.KindRefresh, []byte(id),
					nats.Header{messages.HeaderTraceparent: {tc.value}})
				assert.Equal(t, messages.StatusCanceled, result.Status)
				calls := env.cm.CallsFor(id)
				require.Len(t, calls, 1)
				if tc.forwarded {
					assert.Equal(t, tc.value, calls[0].Header.Get("traceparent"), "on the HTTP call")
					assert.Equal(t, tc.value, msg.Header.Get(messages.HeaderTraceparent), "on the result")
					assert.Equal(t, tc.value, msg.Header.Get("ce-traceparent"), "the CloudEvents extension")
					return
				}
				assert.Empty(t, calls[0].Header.Values("traceparent"), "not forwarded to the HTTP call")
				assert.Empty(t, msg.Header.Values(messages.HeaderTraceparent), "not on the result")
				assert.Empty(t, msg.Header.Values("ce-traceparent"), "no CloudEvents extension")
			})
		}
	})
}

// Any 2xx with abort true is a cancel; a 2xx without it, even without a
// body, is abort_not_set; 408 and 429 are retried and then failed with
// the last status.
func TestSweepAOtherSuccessAndRetriedStatuses(t *testing.T) {
	sweepEachMode(t, cckmtest.Options{}, func(t *testing.T, mode Mode, env *testEnv) {
		attemptsAll := map[Mode]int{ModeJetStream: 4, ModeCore: 2}
		for _, tc := range []struct {
			name      string
			steps     func(id string) []cckmtest.Step
			status    messages.Status
			code      messages.ErrorCode
			http      int
			attempts  int
			retryable bool
			abort     bool
		}{
			{"202 with abort true", func(id string) []cckmtest.Step {
				return []cckmtest.Step{{Status: 202, Body: `{"id":"` + id + `","abort":true,"overall_status":"in_progress"}`}}
			}, messages.StatusCanceled, "", 202, 1, false, true},
			{"204 without a body", func(string) []cckmtest.Step { return []cckmtest.Step{{Status: 204}} },
				messages.StatusFailed, messages.CodeAbortNotSet, 204, 1, false, false},
			{"200 with abort as the string true", func(id string) []cckmtest.Step {
				return []cckmtest.Step{{Status: 200, Body: `{"id":"` + id + `","abort":"true","overall_status":"in_progress"}`}}
			}, messages.StatusFailed, messages.CodeAbortNotSet, 200, 1, false, false},
			{"408 to the end of the budget", func(string) []cckmtest.Step { return repeatStep(cckmtest.Step{Status: 408}, 10) },
				messages.StatusFailed, messages.CodeClientError, 408, attemptsAll[mode], true, false},
			{"429 to the end of the budget", func(string) []cckmtest.Step {
				return repeatStep(cckmtest.Step{Status: 429, RetryAfter: "0"}, 10)
			}, messages.StatusFailed, messages.CodeClientError, 429, attemptsAll[mode], true, false},
			{"503 then a cancel", func(string) []cckmtest.Step { return []cckmtest.Step{{Status: 503}} },
				messages.StatusCanceled, "", 200, 2, false, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := messages.NewRequestID()
				env.cm.AddJob(cckmtest.Refresh, id)
				env.cm.Script(id, tc.steps(id)...)
				result, msg := env.sendWithHeader(t, mode, messages.KindRefresh, []byte(id), nil)
				assert.Equal(t, tc.status, result.Status)
				assert.Equal(t, tc.http, result.HTTPStatus, "http_status")
				assert.Equal(t, tc.attempts, result.Attempts, "attempts")
				assert.Equal(t, tc.abort, result.Abort, "abort")
				raw := rawFields(t, msg.Data)
				if tc.code == "" {
					assert.NotContains(t, raw, "error")
					return
				}
				if assert.NotNil(t, result.Error) {
					assert.Equal(t, tc.code, result.Error.Code)
					assert.Equal(t, tc.retryable, result.Error.Retryable)
				}
			})
		}
	})
}

// A settled event of core mode carries its CloudEvents attributes too,
// ce-id being its own Nats-Msg-Id and ce-time its own completed_at.
func TestSweepACoreModeSettledEventsAreCloudEvents(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, SettleAfter: 100 * time.Millisecond})
	settledEvents := env.watchResults(t, messages.SubjectSettled)
	env.startWorker(t, followConfig(ModeCore), env.client(t, nil))

	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	id := messages.NewRequestID()
	result, _ := env.sendWithHeader(t, ModeCore, "oci-sync", []byte(`{"id":"`+id+`","request_id":"ce-core","follow":true}`),
		nats.Header{messages.HeaderTraceparent: {tp}})
	require.Equal(t, messages.StatusCanceled, result.Status)

	settled, msg := settledEvents.next(t)
	require.NotNil(t, settled.Settled)
	raw := rawFields(t, msg.Data)
	var completedAt string
	require.NoError(t, json.Unmarshal(raw["completed_at"], &completedAt))
	h := msg.Header
	assert.Equal(t, "cckm.cancel.oci-sync.settled", msg.Subject)
	assert.Equal(t, "1.0", h.Get("ce-specversion"))
	assert.Equal(t, "ce-core.settled", h.Get(messages.HeaderMsgID))
	assert.Equal(t, h.Get(messages.HeaderMsgID), h.Get("ce-id"))
	assert.Equal(t, "cckm-cancel-worker", h.Get("ce-source"))
	assert.Equal(t, "com.github.cckm.cancel.settled", h.Get("ce-type"))
	assert.Equal(t, id, h.Get("ce-subject"))
	assert.Equal(t, completedAt, h.Get("ce-time"))
	assert.Equal(t, "application/json", h.Get("ce-datacontenttype"))
	assert.Equal(t, tp, h.Get("ce-traceparent"))
}
