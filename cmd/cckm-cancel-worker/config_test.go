package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// envMap is a fake environment for loadConfig.
type envMap map[string]string

func (e envMap) get(name string) string { return e[name] }

// with returns a copy of e with more variables set.
func (e envMap) with(more envMap) envMap {
	out := envMap{}
	for k, v := range e {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// minimalEnv is the least a non-dev start needs.
var minimalEnv = envMap{"CCKM_URL": "https://cm.example.com", "CCKM_TOKEN": "static-token"}

func load(t *testing.T, env envMap, args ...string) (config, error) {
	t.Helper()
	return loadConfig(args, env.get, io.Discard)
}

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := load(t, minimalEnv)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		got  any
		want any
	}{
		{"NATS_URL defaults to the local server", cfg.NATSURL, "nats://127.0.0.1:4222"},
		{"WORKER_MODE defaults to jetstream", cfg.Worker.Mode, worker.ModeJetStream},
		{"WORKER_PROVISION defaults to true", cfg.Worker.Provision, true},
		{"WORKER_CONCURRENCY defaults to the worker's default", cfg.Worker.Concurrency, worker.DefaultConcurrency},
		{"CCKM_MAX_IN_FLIGHT defaults to 256", cfg.Worker.MaxInFlight, 256},
		{"HTTP_ADDR defaults to :8080", cfg.HTTPAddr, ":8080"},
		{"LOG_LEVEL defaults to info", cfg.LogLevel.String(), "info"},
		{"LOG_FORMAT defaults to json when standard error is not a terminal", cfg.LogFormat, "json"},
		{"WORKER_FOLLOW_INTERVAL defaults to the worker's default", cfg.Worker.FollowInterval, worker.DefaultFollowInterval},
		{"WORKER_FOLLOW_MAX_INTERVAL defaults to 30s", cfg.Worker.FollowMaxInterval, 30 * time.Second},
		{"DEV_NATS_PORT defaults to 4222", cfg.DevNATSPort, 4222},
		{"CCKM_TIMEOUT defaults to the client's default", cfg.CCKM.Timeout, cckmclient.DefaultTimeout},
		{"CCKM_INSECURE_SKIP_VERIFY defaults to false", cfg.CCKM.InsecureSkipVerify, false},
		{"CCKM_RATE_LIMIT defaults to no limit", cfg.Guard.RateLimit, 0.0},
		{"CCKM_RATE_BURST defaults to 1", cfg.Guard.RateBurst, 1},
		{"a hold starts at WORKER_RETRY_DELAY", cfg.Guard.FirstHold, worker.DefaultRetryDelay},
		{"a hold is at most WORKER_MAX_RETRY_DELAY", cfg.Guard.MaxHold, worker.DefaultMaxRetryDelay},
		{"dev mode is off by default", cfg.Dev, false},
		{"no NATS credentials are set by default", cfg.NATSUser + cfg.NATSCreds + cfg.NATSNKey + cfg.NATSToken.Reveal(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, tc.got) })
	}
}

// settingCase is one variable with two valid values: one for the
// environment, one for the flag.
type settingCase struct {
	env             string
	envValue, flagV string
	extra           envMap // more variables the value needs; nil means minimalEnv's token
	get             func(config) string
}

func settingCases(t *testing.T) []settingCase {
	cm := cckmtest.NewServer(cckmtest.Options{TLS: true})
	pem := string(cm.CACertPEM())
	cm.Close()
	caA, caB := writeFile(t, "a.pem", pem), writeFile(t, "b.pem", pem)
	password := envMap{"CCKM_USERNAME": "user", "CCKM_PASSWORD": "pw"}
	str := strconv.Itoa
	return []settingCase{
		{"NATS_URL", "nats://a:4222", "nats://b:4222", nil, func(c config) string { return c.NATSURL }},
		{"NATS_CREDS", "/a.creds", "/b.creds", nil, func(c config) string { return c.NATSCreds }},
		{"NATS_NKEY", "/a.nk", "/b.nk", nil, func(c config) string { return c.NATSNKey }},
		{"NATS_USER", "alice", "bob", envMap{"CCKM_TOKEN": "t", "NATS_PASSWORD": "p"}, func(c config) string { return c.NATSUser }},
		{"NATS_PASSWORD", "npw-a", "npw-b", nil, func(c config) string { return c.NATSPassword.Reveal() }},
		{"NATS_TOKEN", "ntok-a", "ntok-b", nil, func(c config) string { return c.NATSToken.Reveal() }},
		{"NATS_CA_FILE", "/a.pem", "/b.pem", nil, func(c config) string { return c.NATSCAFile }},
		{"NATS_CERT_FILE", "/a.crt", "/b.crt", envMap{"CCKM_TOKEN": "t", "NATS_KEY_FILE": "/k"}, func(c config) string { return c.NATSCertFile }},
		{"NATS_KEY_FILE", "/a.key", "/b.key", envMap{"CCKM_TOKEN": "t", "NATS_CERT_FILE": "/c"}, func(c config) string { return c.NATSKeyFile }},
		{"CCKM_URL", "https://a.example.com", "https://b.example.com", nil, func(c config) string { return c.CCKM.BaseURL }},
		{"CCKM_TOKEN", "tok-a", "tok-b", envMap{}, func(c config) string { return c.CCKM.Credentials.Token.Reveal() }},
		{"CCKM_USERNAME", "alice", "bob", envMap{"CCKM_PASSWORD": "pw"}, func(c config) string { return c.CCKM.Credentials.Username }},
		{"CCKM_PASSWORD", "pw-a", "pw-b", envMap{"CCKM_USERNAME": "user"}, func(c config) string { return c.CCKM.Credentials.Password.Reveal() }},
		{"CCKM_DOMAIN", "root", "sales", password, func(c config) string { return c.CCKM.Credentials.Domain }},
		{"CCKM_REFRESH_TOKEN", "rt-a", "rt-b", envMap{}, func(c config) string { return c.CCKM.Credentials.RefreshToken.Reveal() }},
		{"CCKM_CA_FILE", caA, caB, nil, func(c config) string { return c.CCKM.CAFile }},
		{"CCKM_INSECURE_SKIP_VERIFY", "true", "false", nil, func(c config) string { return strconv.FormatBool(c.CCKM.InsecureSkipVerify) }},
		{"CCKM_TIMEOUT", "5s", "7s", nil, func(c config) string { return c.CCKM.Timeout.String() }},
		{"CCKM_MAX_ATTEMPTS", "2", "3", nil, func(c config) string { return str(c.CCKM.MaxAttempts) }},
		{"CCKM_RETRY_BUDGET", "10s", "20s", nil, func(c config) string { return c.CCKM.RetryBudget.String() }},
		{"CCKM_RATE_LIMIT", "2.5", "50", nil, func(c config) string { return strconv.FormatFloat(c.Guard.RateLimit, 'g', -1, 64) }},
		{"CCKM_RATE_BURST", "3", "10", nil, func(c config) string { return str(c.Guard.RateBurst) }},
		{"WORKER_MODE", "core", "jetstream", nil, func(c config) string { return string(c.Worker.Mode) }},
		{"WORKER_CONCURRENCY", "8", "16", nil, func(c config) string { return str(c.Worker.Concurrency) }},
		{"CCKM_MAX_IN_FLIGHT", "10", "1", nil, func(c config) string { return str(c.Worker.MaxInFlight) }},
		{"WORKER_PROVISION", "false", "true", nil, func(c config) string { return strconv.FormatBool(c.Worker.Provision) }},
		{"WORKER_ACK_WAIT", "45s", "1m0s", nil, func(c config) string { return c.Worker.AckWait.String() }},
		{"WORKER_MAX_DELIVERIES", "3", "7", nil, func(c config) string { return str(c.Worker.MaxDeliveries) }},
		{"WORKER_RETRY_DELAY", "2s", "3s", nil, func(c config) string { return c.Worker.RetryDelay.String() }},
		{"WORKER_MAX_RETRY_DELAY", "40s", "50s", nil, func(c config) string { return c.Worker.MaxRetryDelay.String() }},
		{"WORKER_SHUTDOWN_TIMEOUT", "10s", "15s", nil, func(c config) string { return c.Worker.ShutdownTimeout.String() }},
		{"WORKER_FOLLOW", "true", "false", nil, func(c config) string { return strconv.FormatBool(c.Worker.Follow) }},
		{"WORKER_FOLLOW_TIMEOUT", "1m0s", "2m0s", nil, func(c config) string { return c.Worker.FollowTimeout.String() }},
		{"WORKER_FOLLOW_INTERVAL", "1s", "3s", nil, func(c config) string { return c.Worker.FollowInterval.String() }},
		{"WORKER_FOLLOW_MAX_INTERVAL", "5s", "10s", nil, func(c config) string { return c.Worker.FollowMaxInterval.String() }},
		{"DEV_NATS_PORT", "4333", "0", nil, func(c config) string { return str(c.DevNATSPort) }},
		{"HTTP_ADDR", ":9090", "127.0.0.1:9091", nil, func(c config) string { return c.HTTPAddr }},
		{"HTTP_PPROF", "true", "false", nil, func(c config) string { return strconv.FormatBool(c.HTTPPprof) }},
		{"LOG_LEVEL", "debug", "warn", nil, func(c config) string { return c.LogLevel.String() }},
		{"LOG_FORMAT", "console", "json", nil, func(c config) string { return c.LogFormat }},
	}
}

func (sc settingCase) env0() envMap {
	env := envMap{"CCKM_URL": "https://cm.example.com"}
	if sc.extra == nil {
		return env.with(envMap{"CCKM_TOKEN": "static-token"})
	}
	return env.with(sc.extra)
}

func TestEverySettingIsReadFromTheEnvironmentAndItsFlagWins(t *testing.T) {
	covered := map[string]bool{}
	for _, sc := range settingCases(t) {
		covered[sc.env] = true
		t.Run(sc.env+" is read from the environment", func(t *testing.T) {
			cfg, err := load(t, sc.env0().with(envMap{sc.env: sc.envValue}))
			require.NoError(t, err)
			assert.Equal(t, sc.envValue, sc.get(cfg))
		})
		t.Run("--"+flagName(sc.env)+" wins over "+sc.env, func(t *testing.T) {
			cfg, err := load(t, sc.env0().with(envMap{sc.env: sc.envValue}), "--"+flagName(sc.env)+"="+sc.flagV)
			require.NoError(t, err)
			assert.Equal(t, sc.flagV, sc.get(cfg))
		})
	}
	for _, s := range settings {
		assert.True(t, covered[s.env], "setting %s has no test case", s.env)
	}
}

func TestSecretsCanComeFromFiles(t *testing.T) {
	for _, tc := range []struct {
		env   string
		extra envMap
		get   func(config) cckmclient.Secret
	}{
		{"CCKM_TOKEN", envMap{}, func(c config) cckmclient.Secret { return c.CCKM.Credentials.Token }},
		{"CCKM_PASSWORD", envMap{"CCKM_USERNAME": "user"}, func(c config) cckmclient.Secret { return c.CCKM.Credentials.Password }},
		{"CCKM_REFRESH_TOKEN", envMap{}, func(c config) cckmclient.Secret { return c.CCKM.Credentials.RefreshToken }},
		{"NATS_PASSWORD", envMap{"CCKM_TOKEN": "t"}, func(c config) cckmclient.Secret { return c.NATSPassword }},
		{"NATS_TOKEN", envMap{"CCKM_TOKEN": "t"}, func(c config) cckmclient.Secret { return c.NATSToken }},
	} {
		base := envMap{"CCKM_URL": "https://cm.example.com"}.with(tc.extra)
		path := writeFile(t, "secret", "  from-a-file \n")
		t.Run(tc.env+"_FILE is read and trimmed", func(t *testing.T) {
			cfg, err := load(t, base.with(envMap{tc.env + "_FILE": path}))
			require.NoError(t, err)
			assert.Equal(t, "from-a-file", tc.get(cfg).Reveal())
		})
		t.Run("--"+flagName(tc.env+"_FILE")+" is read too", func(t *testing.T) {
			cfg, err := load(t, base, "--"+flagName(tc.env+"_FILE"), path)
			require.NoError(t, err)
			assert.Equal(t, "from-a-file", tc.get(cfg).Reveal())
		})
		t.Run(tc.env+" and "+tc.env+"_FILE both set is an error", func(t *testing.T) {
			_, err := load(t, base.with(envMap{tc.env: "direct", tc.env + "_FILE": path}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.env+"_FILE")
		})
		t.Run(tc.env+"_FILE naming a missing file is an error", func(t *testing.T) {
			_, err := load(t, base.with(envMap{tc.env + "_FILE": filepath.Join(t.TempDir(), "missing")}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.env+"_FILE")
		})
	}
}

func TestABadSettingIsAnErrorNamingIt(t *testing.T) {
	caMissing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name  string
		env   envMap
		args  []string
		names string
	}{
		{"WORKER_MODE must be jetstream or core", minimalEnv.with(envMap{"WORKER_MODE": "bogus"}), nil, "WORKER_MODE"},
		{"WORKER_CONCURRENCY must be a number", minimalEnv.with(envMap{"WORKER_CONCURRENCY": "abc"}), nil, "WORKER_CONCURRENCY"},
		{"WORKER_CONCURRENCY must be at least 1", minimalEnv.with(envMap{"WORKER_CONCURRENCY": "0"}), nil, "WORKER_CONCURRENCY"},
		{"CCKM_MAX_IN_FLIGHT must be a number", minimalEnv.with(envMap{"CCKM_MAX_IN_FLIGHT": "many"}), nil, "CCKM_MAX_IN_FLIGHT"},
		{"CCKM_MAX_IN_FLIGHT must not be 0", minimalEnv.with(envMap{"CCKM_MAX_IN_FLIGHT": "0"}), nil, "CCKM_MAX_IN_FLIGHT"},
		{"CCKM_MAX_IN_FLIGHT must not be negative", minimalEnv.with(envMap{"CCKM_MAX_IN_FLIGHT": "-5"}), nil, "CCKM_MAX_IN_FLIGHT"},
		{"a bad --cckm-max-in-flight is named like its variable", minimalEnv, []string{"--cckm-max-in-flight=1.5"}, "CCKM_MAX_IN_FLIGHT"},
		{"WORKER_PROVISION must be a boolean", minimalEnv.with(envMap{"WORKER_PROVISION": "maybe"}), nil, "WORKER_PROVISION"},
		{"CCKM_TIMEOUT must be a duration", minimalEnv.with(envMap{"CCKM_TIMEOUT": "fast"}), nil, "CCKM_TIMEOUT"},
		{"CCKM_RATE_LIMIT must not be negative", minimalEnv.with(envMap{"CCKM_RATE_LIMIT": "-1"}), nil, "CCKM_RATE_LIMIT"},
		{"CCKM_RATE_LIMIT must be a number", minimalEnv.with(envMap{"CCKM_RATE_LIMIT": "fast"}), nil, "CCKM_RATE_LIMIT"},
		{"CCKM_RATE_LIMIT must be finite", minimalEnv.with(envMap{"CCKM_RATE_LIMIT": "NaN"}), nil, "CCKM_RATE_LIMIT"},
		{"CCKM_RATE_BURST must be at least 1", minimalEnv.with(envMap{"CCKM_RATE_BURST": "0"}), nil, "CCKM_RATE_BURST"},
		{"CCKM_RATE_BURST must be a whole number", minimalEnv.with(envMap{"CCKM_RATE_BURST": "1.5"}), nil, "CCKM_RATE_BURST"},
		{"LOG_LEVEL must be a zerolog level", minimalEnv.with(envMap{"LOG_LEVEL": "loud"}), nil, "LOG_LEVEL"},
		{"LOG_FORMAT must be json or console", minimalEnv.with(envMap{"LOG_FORMAT": "xml"}), nil, "LOG_FORMAT"},
		{"HTTP_ADDR must be host:port", minimalEnv.with(envMap{"HTTP_ADDR": "nope"}), nil, "HTTP_ADDR"},
		{"CCKM_URL must be http or https", minimalEnv.with(envMap{"CCKM_URL": "ftp://x"}), nil, "CCKM_URL"},
		{"CCKM_URL is required", envMap{"CCKM_TOKEN": "t"}, nil, "CCKM_URL"},
		{"credentials are required", envMap{"CCKM_URL": "https://cm.example.com"}, nil, "CCKM_TOKEN"},
		{"CCKM_USERNAME needs CCKM_PASSWORD", envMap{"CCKM_URL": "https://cm.example.com", "CCKM_USERNAME": "u"}, nil, "CCKM_PASSWORD"},
		{"CCKM_CA_FILE must exist", minimalEnv.with(envMap{"CCKM_CA_FILE": caMissing}), nil, "CCKM_CA_FILE"},
		{"NATS_CERT_FILE needs NATS_KEY_FILE", minimalEnv.with(envMap{"NATS_CERT_FILE": "/c.crt"}), nil, "NATS_KEY_FILE"},
		{"NATS_URL must parse, and the error hides its password", minimalEnv.with(envMap{"NATS_URL": "nats://alice:p%zz@nats:4222"}), nil, "NATS_URL"},
		{"a bad flag value is named like its variable", minimalEnv, []string{"--worker-concurrency=abc"}, "WORKER_CONCURRENCY"},
		{"a positional argument is refused", minimalEnv, []string{"extra"}, "extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.env, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.names)
			assert.NotContains(t, err.Error(), "\n", "the error is one line")
			assert.NotContains(t, err.Error(), "p%zz", "the error shows a password")
		})
	}
}

func TestDevModeNeedsNoCipherTrustManagerSettings(t *testing.T) {
	cfg, err := load(t, envMap{}, "--dev")
	require.NoError(t, err)
	assert.True(t, cfg.Dev)
}

func TestHelpIsNotAnErrorAndShowsNoSecretFromTheEnvironment(t *testing.T) {
	var usage strings.Builder
	env := envMap{"CCKM_PASSWORD": "env-password-123", "NATS_URL": "nats://u:nats-pw-456@h:4222", "CCKM_TOKEN": "env-token-789"}
	_, err := loadConfig([]string{"--help"}, env.get, &usage)
	require.True(t, errors.Is(err, flag.ErrHelp), "got %v", err)
	assert.Contains(t, usage.String(), "-cckm-url")
	for _, secret := range []string{"env-password-123", "nats-pw-456", "env-token-789"} {
		assert.False(t, strings.Contains(usage.String(), secret), "the usage text shows %q", secret)
	}
}

func TestAnUnknownFlagIsAnErrorThatPrintsNothing(t *testing.T) {
	var stderr strings.Builder
	_, err := loadConfig([]string{"--no-such-flag"}, minimalEnv.get, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no-such-flag")
	assert.Empty(t, stderr.String(), "the caller prints the one line")
}

func TestDevModeFollowsWithinAFewSecondsUnlessTold(t *testing.T) {
	cfg, err := load(t, envMap{}, "--dev")
	require.NoError(t, err)
	assert.Equal(t, time.Second, cfg.Worker.FollowInterval, "dev mode's follow interval")
	assert.Equal(t, 3*time.Second, cfg.Worker.FollowMaxInterval, "dev mode's cap: its jobs end 15 s after the cancel")

	cfg, err = load(t, envMap{"WORKER_FOLLOW_MAX_INTERVAL": "7s"}, "--dev", "--worker-follow-interval=2s")
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, cfg.Worker.FollowInterval, "a flag wins over dev mode's default")
	assert.Equal(t, 7*time.Second, cfg.Worker.FollowMaxInterval, "a variable wins over dev mode's default")
}

func TestFollowIntervalsAndTheDevPortAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name, env, value string
	}{
		{"WORKER_FOLLOW_MAX_INTERVAL must be a duration", "WORKER_FOLLOW_MAX_INTERVAL", "soon"},
		{"WORKER_FOLLOW_MAX_INTERVAL must be positive", "WORKER_FOLLOW_MAX_INTERVAL", "0s"},
		{"DEV_NATS_PORT must be a port", "DEV_NATS_PORT", "70000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, minimalEnv.with(envMap{tc.env: tc.value}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.env)
		})
	}
}

func TestVersionIsAskedForWithDashDashVersion(t *testing.T) {
	_, err := load(t, envMap{}, "--version")
	assert.ErrorIs(t, err, errVersion)
}
