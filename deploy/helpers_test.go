package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// repoRoot is the module root, one level above this package.
const repoRoot = ".."

// Paths of the files under test, relative to this package.
var (
	dockerfilePath    = "Dockerfile"
	composePath       = filepath.Join(repoRoot, "docker-compose.yml")
	dockerignore      = filepath.Join(repoRoot, ".dockerignore")
	workerConfigGo    = filepath.Join(repoRoot, "cmd", "cckm-cancel-worker", "config.go")
	fakeCMMainGo      = filepath.Join(repoRoot, "cmd", "cckm-fake-cm", "main.go")
	k8sDir            = "k8s"
	natsDir           = "nats"
	secretExamplePath = filepath.Join(k8sDir, "secret.example.yaml")
)

// readFile returns a file's content or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}

// decodeYAML decodes every document of a (possibly multi-document) YAML
// file into a fresh T, skipping empty documents.
func decodeYAML[T any](t *testing.T, path string) []T {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []T
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return docs
		}
		require.NoError(t, err, "%s: not valid YAML", path)
		if len(node.Content) == 0 {
			continue
		}
		var doc T
		require.NoError(t, node.Decode(&doc), "%s", path)
		docs = append(docs, doc)
	}
}

// workerSetting is one entry of the settings table in
// cmd/cckm-cancel-worker/config.go.
type workerSetting struct {
	env    string
	def    string
	secret bool
}

// settingLine matches one entry of that table: {env: "NAME", def: ..., secret: true}.
var settingLine = regexp.MustCompile(`\{env: "([A-Z0-9_]+)"(?:, def: "([^"]*)")?.*\}`)

// workerSettings reads the worker's settings from its source, without
// importing package main. The _FILE form of each secret is a setting too.
func workerSettings(t *testing.T) map[string]workerSetting {
	t.Helper()
	settings := map[string]workerSetting{}
	for _, line := range strings.Split(string(readFile(t, workerConfigGo)), "\n") {
		m := settingLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		s := workerSetting{env: m[1], def: m[2], secret: strings.Contains(line, "secret: true")}
		settings[s.env] = s
		if s.secret {
			settings[s.env+"_FILE"] = workerSetting{env: s.env + "_FILE"}
		}
	}
	// The table must have been found: a handful of names every version has.
	for _, name := range []string{"NATS_URL", "CCKM_URL", "CCKM_PASSWORD", "CCKM_PASSWORD_FILE", "HTTP_ADDR", "WORKER_SHUTDOWN_TIMEOUT"} {
		require.Contains(t, settings, name, "settings table of %s not understood", workerConfigGo)
	}
	return settings
}

// fakeCMDefault reads a default of cmd/cckm-fake-cm (defaultUsername, …).
func fakeCMDefault(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(name + `\s*=\s*"([^"]*)"`).FindSubmatch(readFile(t, fakeCMMainGo))
	require.NotNil(t, m, "%s not found in %s", name, fakeCMMainGo)
	return string(m[1])
}

// portOf returns the port of a host:port address such as ":8080".
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err, "address %q", addr)
	n, err := strconv.Atoi(port)
	require.NoError(t, err, "address %q", addr)
	return n
}

// flagValue returns the value given to --name (or -name) in args, and
// whether it was given, in the forms "--name value" and "--name=value".
func flagValue(args []string, name string) (string, bool) {
	for i, arg := range args {
		trimmed := strings.TrimLeft(arg, "-")
		if trimmed == arg {
			continue
		}
		if trimmed == name && i+1 < len(args) {
			return args[i+1], true
		}
		if value, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return value, true
		}
	}
	return "", false
}
