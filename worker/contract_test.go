package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// contractCase is one row of the result table: a situation at CipherTrust
// Manager (or in the request) and the result a user must see.
type contractCase struct {
	name  string
	kind  messages.Kind
	setup func(cm *cckmtest.Server, id string) // prepare the fake for job id
	// payload builds the request from the job id; nil means the bare id.
	payload func(id string) string

	status        messages.Status
	code          messages.ErrorCode // "" for no error
	retryable     bool
	httpStatus    int
	attempts      map[Mode]int
	abort         bool
	overallStatus string
	hasJob        bool
	echoedID      func(id string) string // the result's id; nil means the job id
	messageHas    string
	requestID     string // the expected request_id, when the payload sets one
	noHTTPCall    bool
}

func both(n int) map[Mode]int { return map[Mode]int{ModeJetStream: n, ModeCore: n} }

func repeatStep(step cckmtest.Step, n int) []cckmtest.Step {
	steps := make([]cckmtest.Step, n)
	for i := range steps {
		steps[i] = step
	}
	return steps
}

// With testConfig and testEnv.client: 2 attempts per delivery, 2 deliveries
// in jetstream mode, 1 in core mode.
var contractCases = []contractCase{
	{
		name: "a running refresh is canceled", kind: messages.KindRefresh,
		setup:  func(cm *cckmtest.Server, id string) { cm.AddJob(cckmtest.Refresh, id) },
		status: messages.StatusCanceled, httpStatus: 200, attempts: both(1),
		abort: true, overallStatus: "in progress", hasJob: true,
	},
	{
		name: "a running bulk job is canceled, and a JSON request's request_id is echoed", kind: messages.KindBulkJob,
		setup:   func(cm *cckmtest.Server, id string) { cm.AddJob(cckmtest.BulkJob, id) },
		payload: func(id string) string { return `{"id":"` + id + `","request_id":"ir-2291-7","note":"ignored"}` },
		status:  messages.StatusCanceled, httpStatus: 200, attempts: both(1),
		abort: true, overallStatus: "in_progress", hasJob: true, requestID: "ir-2291-7",
	},
	{
		name: "a 2xx whose job has abort false fails with abort_not_set", kind: messages.KindRefresh,
		setup: func(cm *cckmtest.Server, id string) {
			cm.AddJob(cckmtest.Refresh, id)
			cm.Script(id, cckmtest.Step{NoAbort: true})
		},
		status: messages.StatusFailed, code: messages.CodeAbortNotSet, httpStatus: 200, attempts: both(1),
		overallStatus: "in progress", hasJob: true, messageHas: "abort flag is not true",
	},
	{
		name: "a 2xx without a job object fails with abort_not_set and no job", kind: messages.KindBulkJob,
		setup:  func(cm *cckmtest.Server, id string) { cm.Script(id, cckmtest.Step{Status: 200, Body: `[]`}) },
		status: messages.StatusFailed, code: messages.CodeAbortNotSet, httpStatus: 200, attempts: both(1),
		messageHas: "without a job object",
	},
	{
		name: "an unknown job fails with not_found", kind: messages.KindRefresh,
		status: messages.StatusFailed, code: messages.CodeNotFound, httpStatus: 404, attempts: both(1),
		messageHas: "Resource not found",
	},
	{
		name: "a finished job fails with conflict", kind: messages.KindBulkJob,
		setup:  func(cm *cckmtest.Server, id string) { cm.AddFinishedJob(cckmtest.BulkJob, id, "completed") },
		status: messages.StatusFailed, code: messages.CodeConflict, httpStatus: 409, attempts: both(1),
		messageHas: "NCERRConflict",
	},
	{
		name: "a 403 fails with forbidden", kind: messages.KindRefresh,
		setup:  func(cm *cckmtest.Server, id string) { cm.Script(id, cckmtest.Step{Status: 403}) },
		status: messages.StatusFailed, code: messages.CodeForbidden, httpStatus: 403, attempts: both(1),
	},
	{
		name: "another 4xx fails with client_error and is not retried", kind: messages.KindRefresh,
		setup: func(cm *cckmtest.Server, id string) {
			cm.Script(id, cckmtest.Step{Status: 422, Body: `{"code":9,"codeDesc":"NCERRInvalidParamValue","message":"job cannot be canceled"}`})
		},
		status: messages.StatusFailed, code: messages.CodeClientError, httpStatus: 422, attempts: both(1),
		messageHas: "job cannot be canceled",
	},
	{
		name: "a 401 even after a fresh token fails with unauthorized", kind: messages.KindRefresh,
		setup: func(cm *cckmtest.Server, id string) {
			cm.AddJob(cckmtest.Refresh, id)
			cm.Script(id, cckmtest.Step{Status: 401}, cckmtest.Step{Status: 401})
		},
		status: messages.StatusFailed, code: messages.CodeUnauthorized, httpStatus: 401, attempts: both(2),
	},
	{
		name: "a 503 to the end of the retry budget fails with server_error", kind: messages.KindBulkJob,
		setup: func(cm *cckmtest.Server, id string) {
			cm.Script(id, repeatStep(cckmtest.Step{Status: 503}, 10)...)
		},
		status: messages.StatusFailed, code: messages.CodeServerError, retryable: true, httpStatus: 503,
		attempts: map[Mode]int{ModeJetStream: 4, ModeCore: 2},
	},
	{
		name: "no answer to the end of the retry budget fails with unreachable", kind: messages.KindRefresh,
		setup: func(cm *cckmtest.Server, id string) {
			cm.Script(id, repeatStep(cckmtest.Step{Drop: true}, 10)...)
		},
		status: messages.StatusFailed, code: messages.CodeUnreachable, retryable: true, httpStatus: 0,
		attempts: map[Mode]int{ModeJetStream: 4, ModeCore: 2},
	},
	{
		name: "an id that is not a UUID is rejected without a call", kind: messages.KindRefresh,
		payload:  func(string) string { return "../../auth/tokens" },
		echoedID: func(string) string { return "../../auth/tokens" },
		status:   messages.StatusRejected, code: messages.CodeInvalidRequest, attempts: both(0),
		messageHas: "is not a UUID", noHTTPCall: true,
	},
	{
		name: "an unparseable payload is rejected with an empty id", kind: messages.KindBulkJob,
		payload:  func(id string) string { return `{"id": "` + id },
		echoedID: func(string) string { return "" },
		status:   messages.StatusRejected, code: messages.CodeInvalidRequest, attempts: both(0),
		messageHas: "not valid JSON", noHTTPCall: true,
	},
}

func TestEveryContractOutcome(t *testing.T) {
	for _, mode := range []Mode{ModeJetStream, ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, cckmtest.Options{})
			env.startWorker(t, testConfig(mode), env.client(t, nil))
			for _, tc := range contractCases {
				t.Run(tc.name, func(t *testing.T) {
					id := messages.NewRequestID()
					if tc.setup != nil {
						tc.setup(env.cm, id)
					}
					payload := id
					if tc.payload != nil {
						payload = tc.payload(id)
					}
					result, msg := env.send(t, mode, tc.kind, payload)
					tc.check(t, mode, id, result, msg)
					if tc.noHTTPCall {
						assert.Empty(t, env.cm.CallsFor(id), "no HTTP call for a rejected request")
					}
				})
			}
		})
	}
}

// send sends a request as a user would in each mode, and returns the
// result it gets: in jetstream mode published into the stream with the
// answer on Cckm-Reply-To; in core mode as a NATS request-reply.
func (e *testEnv) send(t *testing.T, mode Mode, kind messages.Kind, payload string) (messages.Result, *nats.Msg) {
	t.Helper()
	var reply *nats.Msg
	if mode == ModeCore {
		var err error
		reply, err = e.nc.Request(kind.RequestSubject(), []byte(payload), 10*time.Second)
		require.NoError(t, err)
	} else {
		inbox := nats.NewInbox()
		sub, err := e.nc.SubscribeSync(inbox)
		require.NoError(t, err)
		defer sub.Unsubscribe()
		e.publish(t, kind, payload, nats.Header{messages.HeaderReplyTo: {inbox}})
		reply, err = sub.NextMsg(10 * time.Second)
		require.NoError(t, err, "no result on Cckm-Reply-To within 10s")
	}
	var result messages.Result
	require.NoError(t, json.Unmarshal(reply.Data, &result), string(reply.Data))
	return result, reply
}

func (tc contractCase) check(t *testing.T, mode Mode, id string, r messages.Result, msg *nats.Msg) {
	t.Helper()
	wantID := id
	if tc.echoedID != nil {
		wantID = tc.echoedID(id)
	}
	assert.Equal(t, tc.kind, r.Kind)
	assert.Equal(t, wantID, r.ID)
	assert.Equal(t, tc.status, r.Status)
	assert.Equal(t, tc.httpStatus, r.HTTPStatus, "http_status")
	assert.Equal(t, tc.attempts[mode], r.Attempts, "attempts")
	assert.Equal(t, tc.abort, r.Abort, "abort")
	assert.Equal(t, tc.overallStatus, r.OverallStatus, "overall_status")
	if tc.requestID != "" {
		assert.Equal(t, tc.requestID, r.RequestID)
	} else {
		assert.True(t, messages.IsUUID(r.RequestID), "a generated request_id, got %q", r.RequestID)
	}
	assert.Equal(t, messages.ResultMsgID(r.RequestID), msg.Header.Get(messages.HeaderMsgID))
	assert.False(t, r.ReceivedAt.IsZero())
	assert.False(t, r.CompletedAt.Before(r.ReceivedAt.Time), "completed_at before received_at")

	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(msg.Data, &raw))
	_, hasJob := raw["job"]
	assert.Equal(t, tc.hasJob, hasJob, "job present")
	if tc.hasJob {
		var job map[string]any
		require.NoError(t, json.Unmarshal(raw["job"], &job))
		assert.Equal(t, id, job["id"], "the job as CipherTrust Manager returned it")
	}
	_, hasOverall := raw["overall_status"]
	assert.Equal(t, tc.overallStatus != "", hasOverall, "overall_status present")

	if tc.code == "" {
		assert.Nil(t, r.Error)
		_, hasError := raw["error"]
		assert.False(t, hasError, "error omitted on success")
		return
	}
	require.NotNil(t, r.Error)
	assert.Equal(t, tc.code, r.Error.Code)
	assert.Equal(t, tc.retryable, r.Error.Retryable, "retryable")
	assert.NotEmpty(t, r.Error.Message)
	assert.Contains(t, r.Error.Message, tc.messageHas)
	assert.NotContains(t, string(msg.Data), testPassword)
}

func TestCoreModeCreatesNoStreamOnTheRequestSubjects(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	env.startWorker(t, testConfig(ModeCore), env.client(t, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, kind := range messages.Kinds {
		_, err := env.js.StreamNameBySubject(ctx, kind.RequestSubject())
		assert.Error(t, err, "a stream on %s would answer nats req itself", kind.RequestSubject())
	}
	result, _ := env.send(t, ModeCore, messages.KindRefresh, messages.NewRequestID())
	assert.Equal(t, messages.StatusCanceled, result.Status)
	// The result stream exists and stores core-mode results too.
	require.Eventually(t, func() bool { return len(env.storedResults(t)) == 1 }, 5*time.Second, 10*time.Millisecond)
}

func TestCoreModeAnswersBothTheReplySubjectAndCckmReplyTo(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	env.startWorker(t, testConfig(ModeCore), env.client(t, nil))
	replyTo := env.watchResults(t, "answers.cckm")

	msg := &nats.Msg{Subject: messages.SubjectBulkJob, Data: []byte(messages.NewRequestID()),
		Header: nats.Header{messages.HeaderReplyTo: {"answers.cckm"}, messages.HeaderMsgID: {"core-1"}}}
	reply, err := env.nc.RequestMsg(msg, 10*time.Second)
	require.NoError(t, err)
	var viaReply messages.Result
	require.NoError(t, json.Unmarshal(reply.Data, &viaReply))
	viaHeader, _ := replyTo.next(t)
	assert.Equal(t, "core-1", viaReply.RequestID)
	assert.Equal(t, viaReply, viaHeader, "the same result on both")
	assert.Equal(t, messages.StatusCanceled, viaHeader.Status)
}
