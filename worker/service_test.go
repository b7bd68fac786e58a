package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestEveryInstanceIsListedByNATSMicro(t *testing.T) {
	for _, mode := range []Mode{ModeCore, ModeJetStream} {
		t.Run(string(mode), func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{AnyJob: true})
			env.startWorker(t, testConfig(mode), env.client(t, nil))
			env.startWorker(t, testConfig(mode), env.client(t, nil))

			// What `nats micro ls` asks: every instance answers the ping.
			inbox, err := env.nc.SubscribeSync("_INBOX.ping")
			require.NoError(t, err)
			require.NoError(t, env.nc.PublishRequest("$SRV.PING."+ServiceName, "_INBOX.ping", nil))
			ids := map[string]bool{}
			for range 2 {
				msg, err := inbox.NextMsg(5 * time.Second)
				require.NoError(t, err)
				var ping micro.Ping
				require.NoError(t, json.Unmarshal(msg.Data, &ping))
				assert.Equal(t, ServiceName, ping.Name)
				assert.Equal(t, ServiceVersion, ping.Version)
				ids[ping.ID] = true
			}
			assert.Len(t, ids, 2, "two instances")

			result, _ := env.send(t, mode, messages.KindRefresh, messages.NewRequestID())
			require.Equal(t, messages.StatusCanceled, result.Status)
			rejected, _ := env.send(t, mode, messages.KindRefresh, "nope")
			require.Equal(t, messages.StatusRejected, rejected.Status)

			// What `nats micro stats` shows: the counts of each instance.
			var canceled, rejectedCount int64
			for id := range ids {
				reply, err := env.nc.Request("$SRV.STATS."+ServiceName+"."+id, nil, 5*time.Second)
				require.NoError(t, err)
				var stats struct {
					Metadata  map[string]string `json:"metadata"`
					Endpoints []struct {
						Subject string `json:"subject"`
						Data    Status `json:"data"`
					} `json:"endpoints"`
				}
				require.NoError(t, json.Unmarshal(reply.Data, &stats))
				assert.Equal(t, string(mode), stats.Metadata["mode"])
				require.Len(t, stats.Endpoints, 1)
				assert.Equal(t, StatusSubject, stats.Endpoints[0].Subject)
				assert.True(t, stats.Endpoints[0].Data.Ready)
				canceled += stats.Endpoints[0].Data.Canceled
				rejectedCount += stats.Endpoints[0].Data.Rejected
			}
			assert.Equal(t, int64(1), canceled)
			assert.Equal(t, int64(1), rejectedCount)

			reply, err := env.nc.Request(StatusSubject, nil, 5*time.Second)
			require.NoError(t, err)
			var status Status
			require.NoError(t, json.Unmarshal(reply.Data, &status))
			assert.Equal(t, mode, status.Mode)
			assert.True(t, status.Ready)
		})
	}
}
