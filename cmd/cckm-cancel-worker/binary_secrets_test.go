package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// jwtPrefix starts every JWT the fake issues (the encoded header).
const jwtPrefix = "eyJhbGci"

// secretCase is one way of giving the worker its credentials.
type secretCase struct {
	name string
	cm   cckmtest.Options
	env  map[string]string
	// natsUser and natsPassword, or natsToken, make the NATS server ask for
	// them; natsInURL puts the user and password in NATS_URL.
	natsUser, natsPassword, natsToken string
	natsInURL                         bool
	secrets                           []string
	masked                            []string // configuration log fields that must read ****
}

func secretCases(t *testing.T) []secretCase {
	unique := func(prefix string) string { return prefix + "-" + strings.ReplaceAll(newUUID(t), "-", "")[:16] }
	token, password, refreshToken := unique("static-token"), unique("password"), unique("refresh-token")
	filePassword, natsToken, natsPassword := unique("file-password"), unique("nats-token"), unique("nats-password")
	passwordFile := writeFile(t, "password", filePassword+"\n")
	natsTokenFile := writeFile(t, "nats-token", "  "+natsToken+"\n")
	return []secretCase{
		{
			name: "a static CCKM_TOKEN", cm: cckmtest.Options{StaticToken: token},
			env: map[string]string{"CCKM_TOKEN": token}, secrets: []string{token}, masked: []string{"cckm_token"},
		},
		{
			name: "CCKM_USERNAME and CCKM_PASSWORD", cm: cckmtest.Options{Username: "worker", Password: password},
			env:     map[string]string{"CCKM_USERNAME": "worker", "CCKM_PASSWORD": password},
			secrets: []string{password}, masked: []string{"cckm_password"},
		},
		{
			name: "a CCKM_REFRESH_TOKEN", cm: cckmtest.Options{Username: "worker", RefreshToken: refreshToken},
			env: map[string]string{"CCKM_REFRESH_TOKEN": refreshToken}, secrets: []string{refreshToken}, masked: []string{"cckm_refresh_token"},
		},
		{
			name: "CCKM_PASSWORD_FILE and NATS_TOKEN_FILE", cm: cckmtest.Options{Username: "worker", Password: filePassword},
			env:       map[string]string{"CCKM_USERNAME": "worker", "CCKM_PASSWORD_FILE": passwordFile, "NATS_TOKEN_FILE": natsTokenFile},
			natsToken: natsToken, secrets: []string{filePassword, natsToken}, masked: []string{"cckm_password", "nats_token"},
		},
		{
			name: "a NATS password in NATS_URL", cm: cckmtest.Options{Username: "worker", Password: password},
			env:      map[string]string{"CCKM_USERNAME": "worker", "CCKM_PASSWORD": password},
			natsUser: "worker", natsPassword: natsPassword, natsInURL: true,
			secrets: []string{password, natsPassword}, masked: []string{"cckm_password"},
		},
	}
}

func TestSecretsNeverReachTheOutput(t *testing.T) {
	for _, tc := range secretCases(t) {
		t.Run("with "+tc.name, func(t *testing.T) {
			t.Parallel()
			opts := natstest.Options(t)
			opts.Username, opts.Password, opts.Authorization = tc.natsUser, tc.natsPassword, tc.natsToken
			ns := natstest.RunServer(t, opts)
			cm := cckmtest.NewServer(tc.cm)
			t.Cleanup(cm.Close)
			known, unknown := newUUID(t), newUUID(t)
			cm.AddJob(cckmtest.Refresh, known)

			env := workerEnv(ns, cm, tc.env)
			if tc.natsInURL {
				env["NATS_URL"] = fmt.Sprintf("nats://%s:%s@%s", tc.natsUser, tc.natsPassword, strings.TrimPrefix(ns.ClientURL(), "nats://"))
			}
			nc := natstest.Connect(t, ns, nats.UserInfo(tc.natsUser, tc.natsPassword), nats.Token(tc.natsToken))
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			results := subscribeResults(t, nc)
			p := startBinary(t, env)
			p.waitUntilConsuming(t, js)

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			publish := func(subject, payload string) {
				_, err := js.Publish(ctx, subject, []byte(payload), jetstream.WithMsgID(newUUID(t)))
				require.NoError(t, err)
			}
			publish("cckm.cancel.refresh", known)
			msgs := receiveResults(t, results, 1, 15*time.Second)
			// Expired tokens make the next call renew its token after a 401.
			cm.ExpireTokens()
			publish("cckm.cancel.bulkjob", unknown)
			publish("cckm.cancel.bulkjob", "not-a-uuid")
			msgs = append(msgs, receiveResults(t, results, 2, 15*time.Second)...)

			statuses := map[string]string{}
			for _, msg := range msgs {
				r := decodeResult(t, msg)
				statuses[r.ID] = r.Status
				if r.Error != nil {
					statuses[r.ID] += "/" + r.Error.Code
				}
			}
			assert.Equal(t, map[string]string{
				known: "canceled", unknown: "failed/not_found", "not-a-uuid": "rejected/invalid_request",
			}, statuses)

			require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
			assert.Equal(t, 0, p.exitCode(t, 20*time.Second), "exit status after SIGTERM")

			secrets := append([]string{}, tc.secrets...)
			for _, call := range cm.Calls() {
				if bearer, ok := strings.CutPrefix(call.Header.Get("Authorization"), "Bearer "); ok {
					secrets = append(secrets, bearer)
				}
			}
			require.Greater(t, len(secrets), len(tc.secrets), "no bearer token was seen")
			if tc.cm.StaticToken == "" {
				assert.Positive(t, countStatus(cm, 401), "no call met an expired token")
			}
			output := p.output()
			for _, secret := range append(secrets, jwtPrefix) {
				assert.False(t, strings.Contains(output, secret), "the output shows the secret %q", secret)
				for _, msg := range msgs {
					assert.False(t, strings.Contains(string(msg.Data), secret), "a result shows the secret %q", secret)
					assert.False(t, strings.Contains(fmt.Sprint(msg.Header), secret), "a result header shows the secret %q", secret)
				}
			}

			configuration := p.logLine("configuration")
			require.NotNil(t, configuration, "the configuration log line")
			for _, field := range tc.masked {
				assert.Equal(t, "****", configuration[field], "configuration field %s", field)
			}
			if tc.natsInURL {
				assert.Contains(t, configuration["nats_url"], "xxxxx")
			}
		})
	}
}

// countStatus counts the calls cm answered with status.
func countStatus(cm *cckmtest.Server, status int) int {
	n := 0
	for _, call := range cm.Calls() {
		if call.Status == status {
			n++
		}
	}
	return n
}
