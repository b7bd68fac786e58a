package worker

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// kindsSettleAfter is how long a canceled job of the fake keeps running:
// long enough that the result comes first, short enough for sixteen kinds.
const kindsSettleAfter = 100 * time.Millisecond

// Every kind of the table, in both modes, goes the whole way: the one call
// CipherTrust Manager must see for a cancel, the result on the kind's own
// subject, and a follow that ends with the job.
func TestEveryKindIsCanceledAtItsCollectionAndFollowedToItsEnd(t *testing.T) {
	for _, mode := range []Mode{ModeJetStream, ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{SettleAfter: kindsSettleAfter})
			env.startWorker(t, followConfig(mode), env.client(t, nil))

			for _, info := range messages.KindTable() {
				t.Run(string(info.Kind), func(t *testing.T) {
					resultSubject := "cckm.cancel." + string(info.Kind) + ".result"
					settledSubject := "cckm.cancel." + string(info.Kind) + ".settled"
					results := env.watchResults(t, resultSubject)
					settledEvents := env.watchResults(t, settledSubject)
					id := messages.NewRequestID()
					env.cm.AddJob(info.Kind, id)

					env.send(t, mode, info.Kind, `{"id":"`+id+`","request_id":"ir-`+string(info.Kind)+`","follow":true}`)

					result, msg := results.next(t)
					assert.Equal(t, resultSubject, msg.Subject)
					assert.Equal(t, info.Kind, result.Kind)
					assert.Equal(t, id, result.ID)
					assert.Equal(t, "ir-"+string(info.Kind), result.RequestID)
					assert.Equal(t, messages.StatusCanceled, result.Status)
					assert.True(t, result.Abort, "abort")
					assert.Equal(t, info.Running, result.OverallStatus, "overall_status as the family spells a running job")
					assert.Equal(t, http.StatusOK, result.HTTPStatus)
					assert.Equal(t, 1, result.Attempts)
					assert.Nil(t, result.Error)
					assert.Nil(t, result.Settled, "a result, not a settled event")
					var job struct {
						ID    string `json:"id"`
						Abort bool   `json:"abort"`
					}
					require.NoError(t, json.Unmarshal(result.Job, &job), "the job CipherTrust Manager answered")
					assert.Equal(t, id, job.ID)
					assert.True(t, job.Abort)

					settled, msg := settledEvents.next(t)
					assert.Equal(t, settledSubject, msg.Subject)
					require.NotNil(t, settled.Settled, "a settled event")
					assert.True(t, *settled.Settled, "the job ended before the follow timed out")
					assert.Equal(t, info.Kind, settled.Kind)
					assert.Equal(t, id, settled.ID)
					assert.Equal(t, result.RequestID, settled.RequestID)
					assert.Equal(t, messages.StatusCanceled, settled.Status)
					assert.True(t, settled.Abort)
					assert.Equal(t, cckmtest.StatusCompleted, settled.OverallStatus)

					requireCallsOfACanceledAndFollowedJob(t, env.cm.CallsFor(id), info.Collection+"/"+id)
				})
			}
		})
	}
}

// requireCallsOfACanceledAndFollowedJob checks what the fake received for
// one job: first the cancel, POST jobPath/cancel, then the follow's GETs
// of jobPath, each with a bearer token, Accept: application/json and no
// body. The token itself is never printed.
func requireCallsOfACanceledAndFollowedJob(t *testing.T, calls []cckmtest.Call, jobPath string) {
	t.Helper()
	require.GreaterOrEqual(t, len(calls), 2, "a cancel, then at least one GET of the follow")
	for i, call := range calls {
		method, op, target := http.MethodGet, "get", jobPath
		if i == 0 {
			method, op, target = http.MethodPost, "cancel", jobPath+"/cancel"
		}
		assert.Equal(t, method, call.Method, "call %d", i)
		assert.Equal(t, op, call.Op, "call %d", i)
		assert.Equal(t, target, call.RequestURI, "call %d: the exact request target", i)
		assert.Equal(t, http.StatusOK, call.Status, "call %d: the fake accepted it", i)
		assert.Zero(t, call.BodySize, "call %d: no body", i)
		assert.Equal(t, "application/json", call.Header.Get("Accept"), "call %d", i)
		authorization := call.Header.Values("Authorization")
		token, isBearer := "", len(authorization) == 1 && strings.HasPrefix(authorization[0], "Bearer ")
		if isBearer {
			token = strings.TrimPrefix(authorization[0], "Bearer ")
		}
		assert.True(t, isBearer, "call %d: one Authorization header, Bearer <token>", i)
		assert.True(t, strings.Count(token, ".") == 2 && !strings.ContainsAny(token, " \t"),
			"call %d: the token is a JWT (%d bytes)", i, len(token))
	}
}
