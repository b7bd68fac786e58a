package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Case: a CipherTrust Manager whose clock is an hour behind (every token
// it issues looks expired here) or that answers a duration of ~31,700
// years. Before the fix, one call asked for 1,367–6,417 tokens a second.
func TestTokenRenewalNeverStormsWhateverCipherTrustManagersClockSays(t *testing.T) {
	for name, step := range map[string]cckmtest.TokenStep{
		"a clock an hour behind":   {ClockOffset: -time.Hour, NoIssuedAt: true, NoDuration: true},
		"a duration of 1e12 s":     {Duration: 1_000_000_000_000},
		"a zero duration, old exp": {ClockOffset: -time.Hour, Duration: 0},
	} {
		t.Run(name, func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{AnyJob: true})
			env.cm.SetTokenFault(func(cckmtest.Call) *cckmtest.TokenStep { s := step; return &s })
			results := env.watchResults(t, messages.SubjectResults)
			started := time.Now()
			env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

			const requests = 20
			for range requests {
				env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
			}
			for range requests {
				result, _ := results.next(t)
				assert.Equal(t, messages.StatusCanceled, result.Status, "%+v", result.Error)
			}
			elapsed := time.Since(started)
			assert.LessOrEqual(t, env.cm.TokenRequests(), 1+int(elapsed/time.Second),
				"at most one token request a second (%v)", elapsed)
			require.Len(t, env.storedResults(t), requests)
		})
	}
}
