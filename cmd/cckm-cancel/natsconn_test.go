package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
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

// writeSecret writes content to a file of its own and returns its path.
func writeSecret(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestThePasswordAndTokenMayComeFromFiles(t *testing.T) {
	home := t.TempDir()
	writeContext(t, filepath.Join(home, ".config"), "incident", map[string]any{
		"url": "nats://ctx:4222", "user": "ctx-user", "password": "ctx-pass", "token": "ctx-token",
	})
	passwordFile := writeSecret(t, "password", "  file-pass\n")
	tokenFile := writeSecret(t, "token", "\tfile-token\r\n\n")
	otherFile := writeSecret(t, "other", "other-secret\n")

	tests := []struct {
		name              string
		flags             connSettings
		env               map[string]string
		password, token   string
		wantURL, wantUser string
		withoutTheContext bool
	}{
		{
			name:     "--password-file and --token-file, white space trimmed",
			flags:    connSettings{PasswordFile: passwordFile, TokenFile: tokenFile},
			password: "file-pass", token: "file-token", withoutTheContext: true,
		},
		{
			name:     "NATS_PASSWORD_FILE and NATS_TOKEN_FILE",
			env:      map[string]string{"NATS_PASSWORD_FILE": passwordFile, "NATS_TOKEN_FILE": tokenFile},
			password: "file-pass", token: "file-token", withoutTheContext: true,
		},
		{
			name:     "NATS_PASSWORD and NATS_TOKEN",
			env:      map[string]string{"NATS_PASSWORD": "env-pass", "NATS_TOKEN": "env-token"},
			password: "env-pass", token: "env-token", withoutTheContext: true,
		},
		{
			name:  "a file flag wins over the variables, even both of them",
			flags: connSettings{PasswordFile: passwordFile, Token: "flag-token"},
			env: map[string]string{
				"NATS_PASSWORD": "env-pass", "NATS_PASSWORD_FILE": otherFile,
				"NATS_TOKEN": "env-token", "NATS_TOKEN_FILE": otherFile,
			},
			password: "file-pass", token: "flag-token", withoutTheContext: true,
		},
		{
			name:     "a file variable wins over the context",
			flags:    connSettings{Context: "incident"},
			env:      map[string]string{"NATS_PASSWORD_FILE": passwordFile, "NATS_TOKEN_FILE": tokenFile},
			password: "file-pass", token: "file-token", wantURL: "nats://ctx:4222", wantUser: "ctx-user",
		},
		{
			name:     "the context's secrets when nothing else gives them",
			flags:    connSettings{Context: "incident"},
			password: "ctx-pass", token: "ctx-token", wantURL: "nats://ctx:4222", wantUser: "ctx-user",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"HOME": home}
			if tt.withoutTheContext {
				env["HOME"] = t.TempDir()
			}
			for name, value := range tt.env {
				env[name] = value
			}
			got, err := resolveConnection(tt.flags, envOf(env))
			require.NoError(t, err)
			assert.Equal(t, tt.password, got.Password, "password")
			assert.Equal(t, tt.token, got.Token, "token")
			assert.Equal(t, first(tt.wantURL, defaultURL), got.URL, "url")
			assert.Equal(t, tt.wantUser, got.User, "user")
			assert.Empty(t, got.PasswordFile+got.TokenFile, "the files are read into the secrets")
		})
	}
}

func TestASecretGivenTwiceOrAnUnreadableSecretFileIsAnError(t *testing.T) {
	const secret = "do-not-show-9f8e7d"
	secretFile := writeSecret(t, "secret", secret+"\n")
	emptyFile := writeSecret(t, "empty", " \n")
	missing := filepath.Join(t.TempDir(), "missing")

	tests := []struct {
		name  string
		flags connSettings
		env   map[string]string
		want  []string // in the error
	}{
		{"--password and --password-file", connSettings{Password: secret, PasswordFile: secretFile}, nil,
			[]string{"--password and --password-file are both set"}},
		{"--token and --token-file", connSettings{Token: secret, TokenFile: secretFile}, nil,
			[]string{"--token and --token-file are both set"}},
		{"NATS_PASSWORD and NATS_PASSWORD_FILE", connSettings{}, map[string]string{"NATS_PASSWORD": secret, "NATS_PASSWORD_FILE": secretFile},
			[]string{"NATS_PASSWORD and NATS_PASSWORD_FILE are both set"}},
		{"NATS_TOKEN and NATS_TOKEN_FILE", connSettings{}, map[string]string{"NATS_TOKEN": secret, "NATS_TOKEN_FILE": secretFile},
			[]string{"NATS_TOKEN and NATS_TOKEN_FILE are both set"}},
		{"a missing --token-file", connSettings{TokenFile: missing}, nil,
			[]string{"--token-file", missing, "no such file"}},
		{"an empty NATS_PASSWORD_FILE", connSettings{}, map[string]string{"NATS_PASSWORD_FILE": emptyFile},
			[]string{"NATS_PASSWORD_FILE", emptyFile, "is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"HOME": t.TempDir()}
			for name, value := range tt.env {
				env[name] = value
			}
			_, err := resolveConnection(tt.flags, envOf(env))
			require.Error(t, err)
			for _, want := range tt.want {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotContains(t, err.Error(), secret)
		})
	}
}

func TestSecretsFromFilesConnectAndNoneIsOnTheCommandLine(t *testing.T) {
	tokenOpts := natstest.Options(t)
	tokenOpts.Authorization = "file-token-4c3b2a"
	tokenServer := natstest.RunServer(t, tokenOpts)
	passwordOpts := natstest.Options(t)
	passwordOpts.Username, passwordOpts.Password = "ops", "file-password-1a2b3c"
	passwordServer := natstest.RunServer(t, passwordOpts)
	tokenFile := writeSecret(t, "token", tokenOpts.Authorization+"\n")
	passwordFile := writeSecret(t, "password", passwordOpts.Password+"\n")

	for _, tc := range []struct {
		name string
		ns   *server.Server
		env  map[string]string
		args []string
	}{
		{"--token-file", tokenServer, nil, []string{"--token-file", tokenFile}},
		{"NATS_TOKEN_FILE", tokenServer, map[string]string{"NATS_TOKEN_FILE": tokenFile}, nil},
		{"NATS_TOKEN", tokenServer, map[string]string{"NATS_TOKEN": tokenOpts.Authorization}, nil},
		{"--user and --password-file", passwordServer, nil, []string{"--user", "ops", "--password-file", passwordFile}},
		{"NATS_USER and NATS_PASSWORD_FILE", passwordServer, map[string]string{"NATS_USER": "ops", "NATS_PASSWORD_FILE": passwordFile}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t, tc.ns)
			for name, value := range tc.env {
				c.env[name] = value
			}
			res := c.run(t, append(tc.args, "refresh", jobA)...)
			// Connected, and no worker answers.
			assert.Equal(t, exitNotCanceled, res.code, res.stderr)
			assert.Contains(t, res.stdout, "no_responders")
		})
	}

	t.Run("a token given twice exits 2 with one line and sends nothing", func(t *testing.T) {
		watcher := natstest.Connect(t, tokenServer, nats.Token(tokenOpts.Authorization))
		requests := make(chan *nats.Msg, 10)
		_, err := watcher.ChanSubscribe("cckm.cancel.>", requests)
		require.NoError(t, err)
		require.NoError(t, watcher.Flush())

		c := newCLI(t, tokenServer)
		res := c.run(t, "--token", tokenOpts.Authorization, "--token-file", tokenFile, "refresh", jobA)

		assert.Equal(t, exitUsage, res.code)
		assert.Empty(t, res.stdout)
		assert.Equal(t, "cckm-cancel: --token and --token-file are both set: set one\n", res.stderr)
		require.NoError(t, watcher.Flush())
		assert.Empty(t, requests, "a request was sent")
	})

	t.Run("a wrong token from a file names no secret", func(t *testing.T) {
		c := newCLI(t, tokenServer)
		c.env["NATS_TOKEN_FILE"] = writeSecret(t, "wrong", "wrong-token-5d6e7f\n")
		res := c.run(t, "refresh", jobA)
		assert.Equal(t, exitUsage, res.code)
		assert.Equal(t, 1, strings.Count(res.stderr, "\n"), res.stderr)
		assert.Contains(t, strings.ToLower(res.stderr), "authorization violation")
		assert.NotContains(t, res.stderr, "wrong-token-5d6e7f")
	})
}

func TestAnNKeySeedGivenForItsFileIsNotShown(t *testing.T) {
	const seed = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY"
	ns := natstest.RunServer(t, nil)
	res := newCLI(t, ns).run(t, "--nkey", seed, "refresh", jobA)
	assert.Equal(t, exitUsage, res.code)
	assert.Equal(t, "cckm-cancel: nkey: give the file holding the NKey seed, not the seed itself\n", res.stderr)
	assert.NotContains(t, res.stdout, seed)
}
