package deploy_test

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// compose is the part of the Compose file format docker-compose.yml uses;
// decoding refuses any other key, so a misspelt one fails the test.
type compose struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]struct{}       `yaml:"volumes"`
}

type composeService struct {
	Image           string            `yaml:"image"`
	Build           *composeBuild     `yaml:"build"`
	Entrypoint      []string          `yaml:"entrypoint"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	DependsOn       []string          `yaml:"depends_on"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Restart         string            `yaml:"restart"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// The service names docker-compose.yml defines.
const (
	natsService   = "nats"
	cmService     = "cckm"
	workerService = "worker"
)

// loadCompose decodes docker-compose.yml strictly.
func loadCompose(t *testing.T) compose {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, composePath)))
	dec.KnownFields(true)
	var c compose
	require.NoError(t, dec.Decode(&c), "%s", composePath)
	for _, name := range []string{natsService, cmService, workerService} {
		require.Contains(t, c.Services, name, "service %s", name)
	}
	return c
}

// composeFakeCMEntrypoint is the binary the cckm service runs.
func composeFakeCMEntrypoint(t *testing.T) string {
	t.Helper()
	entry := loadCompose(t).Services[cmService].Entrypoint
	require.Len(t, entry, 1, "the cckm service's entrypoint is one binary")
	return entry[0]
}

// publishedPorts returns the container ports a service publishes, from
// short-syntax entries such as "127.0.0.1:8080:8080" or "8080".
func publishedPorts(t *testing.T, s composeService) map[int]bool {
	t.Helper()
	ports := map[int]bool{}
	for _, entry := range s.Ports {
		entry, _, _ = strings.Cut(entry, "/") // protocol
		parts := strings.Split(entry, ":")
		port, err := strconv.Atoi(parts[len(parts)-1])
		require.NoError(t, err, "port entry %q", entry)
		ports[port] = true
	}
	return ports
}

func TestComposeVariablesAreWorkerSettings(t *testing.T) {
	settings := workerSettings(t)
	c := loadCompose(t)
	for name := range c.Services[workerService].Environment {
		assert.Contains(t, settings, name, "worker service: %s is not a setting of the worker", name)
	}
	env := c.Services[workerService].Environment
	for name := range env {
		if base, ok := strings.CutSuffix(name, "_FILE"); ok {
			assert.NotContains(t, env, base, "%s and %s together are an error", base, name)
		}
	}
}

func TestComposeBuildsOneImageFromTheDockerfile(t *testing.T) {
	c := loadCompose(t)
	workerSvc, cmSvc := c.Services[workerService], c.Services[cmService]
	for name, s := range map[string]composeService{workerService: workerSvc, cmService: cmSvc} {
		require.NotNil(t, s.Build, "%s is built here", name)
		context := filepath.Join(repoRoot, s.Build.Context)
		_, err := os.Stat(filepath.Join(context, "go.mod"))
		assert.NoError(t, err, "%s: the build context is the module root", name)
		assert.Equal(t, absPath(t, dockerfilePath), absPath(t, filepath.Join(context, s.Build.Dockerfile)),
			"%s: built from deploy/Dockerfile", name)
	}
	assert.Equal(t, workerSvc.Image, cmSvc.Image, "the worker and the fake CM are two entrypoints of one image")
	assert.Equal(t, k8sImageName(t), imageRepository(workerSvc.Image),
		"compose and Kubernetes name the same image")
	assert.Empty(t, workerSvc.Entrypoint, "the worker runs the image's ENTRYPOINT")
}

func TestComposeWiresTheWorkerToNATSAndTheFakeCM(t *testing.T) {
	c := loadCompose(t)
	workerSvc, cmSvc, natsSvc := c.Services[workerService], c.Services[cmService], c.Services[natsService]
	env := workerSvc.Environment

	natsURL, err := url.Parse(env["NATS_URL"])
	require.NoError(t, err)
	assert.Equal(t, natsService, natsURL.Hostname())
	assert.Equal(t, "4222", natsURL.Port())
	assert.True(t, publishedPorts(t, natsSvc)[4222], "NATS is reachable from the host for the nats CLI")
	assert.Equal(t, "nats:"+embeddedNATSServerVersion(t), natsSvc.Image,
		"the NATS server the tests embed (go.mod), major.minor")
	assert.True(t, hasFlag(natsSvc.Command, "js") || hasFlag(natsSvc.Command, "jetstream"), "JetStream is on: %v", natsSvc.Command)
	storeDir, ok := flagValue(natsSvc.Command, "sd")
	require.True(t, ok, "the JetStream store directory is set")
	assert.Contains(t, strings.Join(natsSvc.Volumes, " "), ":"+storeDir, "the store is on a volume")
	if monitor, ok := flagValue(natsSvc.Command, "m"); ok {
		port, err := strconv.Atoi(monitor)
		require.NoError(t, err)
		assert.True(t, publishedPorts(t, natsSvc)[port], "the monitoring port is published")
	}

	cmURL, err := url.Parse(env["CCKM_URL"])
	require.NoError(t, err)
	assert.Equal(t, cmService, cmURL.Hostname())
	addr, ok := flagValue(cmSvc.Command, "addr")
	if !ok {
		addr = fakeCMDefault(t, "defaultAddr")
	}
	assert.Equal(t, strconv.Itoa(portOf(t, addr)), cmURL.Port(), "CCKM_URL's port is the one the fake listens on")
	assert.True(t, publishedPorts(t, cmSvc)[portOf(t, addr)])
	wantScheme := "http"
	if hasFlag(cmSvc.Command, "tls") {
		wantScheme = "https"
	}
	assert.Equal(t, wantScheme, cmURL.Scheme)

	user, ok := flagValue(cmSvc.Command, "username")
	if !ok {
		user = cckmtest.SampleUsername // cckm-fake-cm's default
	}
	password, ok := flagValue(cmSvc.Command, "password")
	if !ok {
		password = cckmtest.SamplePassword // cckm-fake-cm's default
	}
	assert.Equal(t, user, env["CCKM_USERNAME"], "the fake accepts the worker's user")
	assert.Equal(t, password, env["CCKM_PASSWORD"], "the fake accepts the worker's password")

	assert.ElementsMatch(t, []string{natsService, cmService}, workerSvc.DependsOn)
}

func TestComposePublishesTheWorkersHTTPPort(t *testing.T) {
	c := loadCompose(t)
	workerSvc := c.Services[workerService]
	addr, ok := workerSvc.Environment["HTTP_ADDR"]
	if !ok {
		addr = workerSettings(t)["HTTP_ADDR"].def
	}
	port := portOf(t, addr)
	assert.True(t, publishedPorts(t, workerSvc)[port], "HTTP_ADDR's port %d is published", port)
	assert.Contains(t, loadImage(t).exposed, strconv.Itoa(port), "and exposed by the image")
}

func TestComposeGivesTheWorkerTimeToDrain(t *testing.T) {
	c := loadCompose(t)
	workerSvc := c.Services[workerService]
	shutdown := durationSetting(t, workerSvc.Environment, "WORKER_SHUTDOWN_TIMEOUT", worker.DefaultShutdownTimeout)
	grace := 10 * time.Second // Compose's default
	if workerSvc.StopGracePeriod != "" {
		var err error
		grace, err = time.ParseDuration(workerSvc.StopGracePeriod)
		require.NoError(t, err)
	}
	assert.Greater(t, grace, drainTime(shutdown), "stop_grace_period against WORKER_SHUTDOWN_TIMEOUT")
}

// embeddedNATSServerVersion is the major.minor of the nats-server module in
// go.mod, the server the tests run embedded, e.g. "2.15".
func embeddedNATSServerVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\d+\.\d+)\.`).FindSubmatch(readFile(t, filepath.Join(repoRoot, "go.mod")))
	require.NotNil(t, m, "no nats-server requirement in go.mod")
	return string(m[1])
}

// durationSetting is a duration setting from env, else def (the
// worker's default, which config.go writes as an expression).
func durationSetting(t *testing.T, env map[string]string, name string, def time.Duration) time.Duration {
	t.Helper()
	value, ok := env[name]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(value)
	require.NoError(t, err, "%s %q", name, value)
	return d
}

// drainTime is the longest a worker takes from SIGTERM to exit: work in
// flight within the shutdown timeout, then draining NATS within it again,
// then 5s for the HTTP server (cmd/cckm-cancel-worker/main.go).
func drainTime(shutdownTimeout time.Duration) time.Duration {
	return 2*shutdownTimeout + 5*time.Second
}

// hasFlag reports whether a boolean flag --name (or -name) is in args.
func hasFlag(args []string, name string) bool {
	for _, arg := range args {
		if arg == "-"+name || arg == "--"+name || arg == "--"+name+"=true" {
			return true
		}
	}
	return false
}

// imageRepository strips the tag or digest from an image reference.
func imageRepository(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// absPath makes a path absolute, for comparing two ways of naming a file.
func absPath(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	require.NoError(t, err)
	return abs
}
