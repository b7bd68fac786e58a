package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// devClient is a client of the dev CipherTrust Manager, logged in as dev
// mode logs the worker in.
func devClient(t *testing.T, cm *cckmtest.Server) *cckmclient.Client {
	t.Helper()
	client, err := cckmclient.New(cckmclient.Config{
		BaseURL:     cm.URL(),
		Credentials: cckmclient.Credentials{Username: devUsername, Password: devPassword},
		Timeout:     5 * time.Second,
		MaxAttempts: 1,
		RetryBudget: 5 * time.Second,
	})
	require.NoError(t, err)
	return client
}

func TestTheDevCipherTrustManagerCancelsANewUUIDOfEveryKind(t *testing.T) {
	cm := newDevCM()
	t.Cleanup(cm.Close)
	client := devClient(t, cm)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, info := range messages.KindTable() {
		resp, err := client.Cancel(ctx, info.Kind, messages.NewRequestID())
		require.NoError(t, err, "a new %s job is running", info.Kind)
		assert.True(t, resp.Job.Abort, info.Kind)
		assert.Equal(t, info.Running, resp.Job.OverallStatus, info.Kind)
	}
}

func TestTheDevSampleJobsShowConflictAndNotFound(t *testing.T) {
	cm := newDevCM()
	t.Cleanup(cm.Close)
	client := devClient(t, cm)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	outcomes := map[string]int{}
	for _, job := range cckmtest.SampleJobs {
		resp, err := client.Cancel(ctx, job.Kind, job.ID)
		switch {
		case job.Unknown || job.Finished:
			want := http.StatusConflict
			if job.Unknown {
				want = http.StatusNotFound
			}
			var apiErr *cckmclient.APIError
			require.ErrorAs(t, err, &apiErr, "%s %s", job.Kind, job.ID)
			assert.Equal(t, want, apiErr.StatusCode, "%s %s", job.Kind, job.ID)
			outcomes[http.StatusText(want)]++
		default:
			require.NoError(t, err, "%s %s", job.Kind, job.ID)
			assert.True(t, resp.Job.Abort)
			outcomes["canceled"]++
		}
	}
	assert.Positive(t, outcomes["canceled"], "a running sample")
	assert.Positive(t, outcomes[http.StatusText(http.StatusConflict)], "a finished sample")
	assert.Positive(t, outcomes[http.StatusText(http.StatusNotFound)], "an unknown sample")

	for _, job := range cckmtest.SampleJobs {
		if !job.Unknown {
			continue
		}
		for _, kind := range messages.Kinds {
			_, err := client.Get(ctx, kind, job.ID)
			var apiErr *cckmclient.APIError
			require.ErrorAs(t, err, &apiErr, "the unknown id is unknown as a %s too", kind)
			assert.Equal(t, http.StatusNotFound, apiErr.StatusCode)
		}
	}
}

func TestTheDevBannerShowsAHandfulOfKindsWithCommandsToTry(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := newDevCM()
	t.Cleanup(cm.Close)
	env := &devEnv{nats: ns, cm: cm}

	for _, mode := range []worker.Mode{worker.ModeJetStream, worker.ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			var out bytes.Buffer
			env.printHowTo(&out, config{HTTPAddr: ":8080", Worker: worker.Config{Mode: mode}})
			banner := out.String()
			send := "nats pub "
			if mode == worker.ModeCore {
				send = "nats req "
			}

			assert.Contains(t, banner, cm.URL())
			assert.Contains(t, banner, ns.ClientURL())
			assert.Contains(t, banner, "http://127.0.0.1:8080/healthz")
			assert.Contains(t, banner, send+cckmtest.SampleFreshKind.RequestSubject()+" $(uuidgen)")
			for _, kind := range messages.Kinds {
				assert.Contains(t, banner, " "+string(kind), "every kind is named")
			}
			for _, job := range cckmtest.SampleJobs {
				line, heading := lineWith(banner, job.ID)
				require.NotEmpty(t, line, "a command for the sample %s %s", job.Kind, job.ID)
				assert.True(t, strings.HasPrefix(line, "  "+send+job.Kind.RequestSubject()+" "), line)
				switch {
				case job.Unknown:
					assert.Contains(t, heading, "not_found", line)
				case job.Finished:
					assert.Contains(t, heading, "conflict", line)
				default:
					assert.Contains(t, line, `"follow":true`)
					assert.Contains(t, heading, "canceled", line)
					assert.Contains(t, heading, "settled 15s later", line)
				}
			}

			commands, kinds := 0, map[string]bool{}
			for _, line := range strings.Split(banner, "\n") {
				fields := strings.Fields(line)
				if len(fields) >= 3 && fields[0] == "nats" && strings.HasPrefix(fields[2], "cckm.cancel.") {
					commands++
					kinds[strings.TrimPrefix(fields[2], "cckm.cancel.")] = true
				}
			}
			assert.LessOrEqual(t, commands, 10, "a handful of commands, not one per kind:\n%s", banner)
			assert.GreaterOrEqual(t, len(kinds), 4, "commands for several kinds: %v", kinds)
			if mode == worker.ModeJetStream {
				assert.Contains(t, banner, "send with `nats pub`; the stream acknowledges", "which command fits the mode")
				assert.Contains(t, banner, "cckm.cancel.<kind>.result", "where the results come")
				assert.Contains(t, banner, "WORKER_MODE=core", "how to get nats req")
				assert.Contains(t, banner, "Cckm-Reply-To:my.answers")
				assert.Contains(t, banner, "nats stream view CCKM_CANCEL_RESULTS")
			} else {
				assert.Contains(t, banner, "send with `nats req`; the reply is the result", "which command fits the mode")
				assert.NotContains(t, banner, "nats pub ", "core mode answers nats req")
			}
			assert.NotContains(t, banner, devPassword)
		})
	}
}

func TestWrapWordsKeepsLinesWithinTheWidth(t *testing.T) {
	assert.Equal(t, []string{"aa bb", "cc", "dddddd", "e"}, wrapWords([]string{"aa", "bb", "cc", "dddddd", "e"}, 5))
	assert.Empty(t, wrapWords(nil, 5))
	for _, line := range wrapWords(kindNames(), howToKindsWidth) {
		assert.LessOrEqual(t, len(line), howToKindsWidth)
	}
	assert.Equal(t, strings.Join(kindNames(), " "), strings.Join(wrapWords(kindNames(), howToKindsWidth), " "), "no kind lost")
}

// lineWith returns the first line of text that contains part, and the
// comment line ("  # ...") nearest above it; "" when there is none.
func lineWith(text, part string) (line, heading string) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "  # ") {
			heading = line
		}
		if strings.Contains(line, part) {
			return line, heading
		}
	}
	return "", ""
}
