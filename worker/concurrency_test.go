package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// countingCanceler records how many calls run at once.
type countingCanceler struct {
	Canceler
	now, peak atomic.Int64
}

func (c *countingCanceler) Cancel(ctx context.Context, kind messages.Kind, id string) (cckmclient.Response, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for {
		peak := c.peak.Load()
		if n <= peak || c.peak.CompareAndSwap(peak, n) {
			break
		}
	}
	return c.Canceler.Cancel(ctx, kind, id)
}

func TestCallsInFlightNeverExceedTheConcurrency(t *testing.T) {
	for _, mode := range []Mode{ModeJetStream, ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{AnyJob: true, Latency: 30 * time.Millisecond})
			results := env.watchResults(t, messages.SubjectResults)
			counting := &countingCanceler{Canceler: env.client(t, nil)}
			cfg := testConfig(mode)
			cfg.Concurrency = 4
			env.startWorker(t, cfg, counting)

			const requests = 40
			for range requests {
				if mode == ModeCore {
					require.NoError(t, env.nc.Publish(messages.SubjectRefresh, []byte(messages.NewRequestID())))
				} else {
					env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
				}
			}
			for range requests {
				result, _ := results.next(t)
				assert.Equal(t, messages.StatusCanceled, result.Status)
			}
			assert.Equal(t, int64(4), counting.peak.Load(), "WORKER_CONCURRENCY calls at once, never more")
		})
	}
}
