package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// writeContext writes a nats CLI context file under configHome and returns
// its path.
func writeContext(t *testing.T, configHome, name string, fields map[string]any) string {
	t.Helper()
	dir := filepath.Join(configHome, "nats", "context")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	data, err := json.Marshal(fields)
	require.NoError(t, err)
	path := filepath.Join(dir, name+".json")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

func selectContext(t *testing.T, configHome, name string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(configHome, "nats", "context.txt"), []byte(name+"\n"), 0o600))
}

func envOf(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestConnectionSettingsPreferFlagsThenVariablesThenTheContext(t *testing.T) {
	home := t.TempDir()
	writeContext(t, filepath.Join(home, ".config"), "incident", map[string]any{
		"description": "incident response", "url": "nats://ctx:4222", "user": "ctx-user", "password": "ctx-pass",
		"creds": "~/creds/ops.creds", "ca": "/etc/ctx-ca.pem", "inbox_prefix": "_INBOX_OPS", "jetstream_domain": "hub",
		"tls_first": true, "nsc": "",
	})

	tests := []struct {
		name  string
		flags connSettings
		env   map[string]string
		want  connSettings
	}{
		{
			name: "nothing set connects to the default server",
			env:  map[string]string{"HOME": t.TempDir()},
			want: connSettings{URL: defaultURL},
		},
		{
			name:  "the context named by --context fills what is unset",
			flags: connSettings{Context: "incident"},
			env:   map[string]string{"HOME": home},
			want: connSettings{
				URL: "nats://ctx:4222", User: "ctx-user", Password: "ctx-pass",
				Creds: filepath.Join(home, "creds", "ops.creds"), CA: "/etc/ctx-ca.pem",
				InboxPrefix: "_INBOX_OPS", JetStreamDomain: "hub", TLSFirst: true,
			},
		},
		{
			name:  "variables win over the context, flags over variables",
			flags: connSettings{Context: "incident", URL: "nats://flag:4222"},
			env: map[string]string{
				"HOME": home, "NATS_URL": "nats://env:4222", "NATS_USER": "env-user", "NATS_PASSWORD": "env-pass",
				"NATS_CA_FILE": "/etc/worker-ca.pem", "NATS_CERT": "/etc/cert.pem", "NATS_KEY_FILE": "/etc/key.pem",
			},
			want: connSettings{
				URL: "nats://flag:4222", User: "env-user", Password: "env-pass",
				Creds: filepath.Join(home, "creds", "ops.creds"), CA: "/etc/worker-ca.pem", Cert: "/etc/cert.pem", Key: "/etc/key.pem",
				InboxPrefix: "_INBOX_OPS", JetStreamDomain: "hub", TLSFirst: true,
			},
		},
		{
			name: "NATS_CONTEXT names the context",
			env:  map[string]string{"HOME": home, "NATS_CONTEXT": "incident"},
			want: connSettings{
				URL: "nats://ctx:4222", User: "ctx-user", Password: "ctx-pass",
				Creds: filepath.Join(home, "creds", "ops.creds"), CA: "/etc/ctx-ca.pem",
				InboxPrefix: "_INBOX_OPS", JetStreamDomain: "hub", TLSFirst: true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveConnection(tt.flags, envOf(tt.env))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestTheSelectedContextIsUsedUnderXDGConfigHome(t *testing.T) {
	configHome := t.TempDir()
	writeContext(t, configHome, "prod", map[string]any{"url": "nats://prod:4222", "token": "s3cret"})
	selectContext(t, configHome, "prod")

	got, err := resolveConnection(connSettings{}, envOf(map[string]string{"XDG_CONFIG_HOME": configHome, "HOME": t.TempDir()}))

	require.NoError(t, err)
	assert.Equal(t, connSettings{URL: "nats://prod:4222", Token: "s3cret"}, got)
}

func TestBadContextsAreUsageErrors(t *testing.T) {
	configHome := t.TempDir()
	writeContext(t, configHome, "nsc", map[string]any{"nsc": "nsc://operator/account/user"})
	path := writeContext(t, configHome, "broken", nil)
	require.NoError(t, os.WriteFile(path, []byte("{"), 0o600))
	env := map[string]string{"XDG_CONFIG_HOME": configHome}

	_, err := resolveConnection(connSettings{Context: "missing"}, envOf(env))
	assert.ErrorContains(t, err, `nats context "missing": no such context`)
	_, err = resolveConnection(connSettings{Context: "nsc"}, envOf(env))
	assert.ErrorContains(t, err, "nsc is not supported")
	_, err = resolveConnection(connSettings{Context: "broken"}, envOf(env))
	assert.ErrorContains(t, err, "broken.json")

	selectContext(t, configHome, "gone")
	_, err = resolveConnection(connSettings{}, envOf(env))
	assert.ErrorContains(t, err, `nats context "gone" selected in`)
}

func TestAContextConnectsToAServerThatWantsAPassword(t *testing.T) {
	opts := natstest.Options(t)
	opts.Username, opts.Password = "ops", "ops-password"
	ns := natstest.RunServer(t, opts)
	home := t.TempDir()
	path := writeContext(t, filepath.Join(home, ".config"), "incident", map[string]any{
		"url": ns.ClientURL(), "user": "ops", "password": "ops-password",
	})
	c := newCLI(t, nil)
	c.env["HOME"] = home

	res := c.run(t, "--context", "incident", "refresh", jobA)
	assert.Equal(t, exitNotCanceled, res.code, "connected, and nothing answers: %s", res.stderr)
	assert.Contains(t, res.stdout, "no_responders")

	res = c.run(t, "--context", path, "refresh", jobA)
	assert.Equal(t, exitNotCanceled, res.code, "a context may be named by its path: %s", res.stderr)

	c.env["NATS_PASSWORD"] = "wrong"
	res = c.run(t, "--context", "incident", "refresh", jobA)
	assert.Equal(t, exitUsage, res.code)
	assert.Equal(t, 1, strings.Count(res.stderr, "\n"), res.stderr)
	assert.Contains(t, res.stderr, "cckm-cancel: cannot connect to NATS at nats://127.0.0.1:")
	assert.Contains(t, strings.ToLower(res.stderr), "authorization violation")
}
