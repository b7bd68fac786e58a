package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/worker"
)

func TestKubernetesVariablesAreWorkerSettings(t *testing.T) {
	settings := workerSettings(t)
	m := loadManifests(t)
	names := map[string]bool{}
	for key := range m.configMap.Data {
		assert.Contains(t, settings, key, "ConfigMap key %s is not a setting of the worker", key)
		names[key] = true
	}
	for _, env := range m.worker().Env {
		assert.Contains(t, settings, env.Name, "env %s is not a setting of the worker", env.Name)
		assert.False(t, names[env.Name], "%s is set twice", env.Name)
		names[env.Name] = true
	}
	for name := range names {
		if base, ok := strings.CutSuffix(name, "_FILE"); ok {
			assert.False(t, names[base], "%s and %s together are an error", base, name)
			assert.True(t, settings[base].secret, "%s: %s is not a secret setting", name, base)
		}
		assert.False(t, settings[name].secret && m.configMap.Data[name] != "", "secret %s does not belong in the ConfigMap", name)
	}
}

func TestTheConfigMapValuesAreSensible(t *testing.T) {
	data := loadManifests(t).configMap.Data
	for _, name := range []string{"NATS_URL", "CCKM_URL", "WORKER_MODE", "WORKER_CONCURRENCY", "HTTP_ADDR", "LOG_LEVEL", "LOG_FORMAT"} {
		assert.Contains(t, data, name)
	}
	for name, value := range data {
		switch {
		case strings.HasSuffix(name, "_TIMEOUT"), strings.HasSuffix(name, "_DELAY"), strings.HasSuffix(name, "_BUDGET"), strings.HasSuffix(name, "_WAIT"), strings.HasSuffix(name, "_INTERVAL"):
			d, err := time.ParseDuration(value)
			assert.NoError(t, err, "%s %q", name, value)
			assert.Positive(t, d, name)
		case name == "WORKER_CONCURRENCY", name == "WORKER_MAX_DELIVERIES", name == "CCKM_MAX_ATTEMPTS":
			n, err := strconv.Atoi(value)
			assert.NoError(t, err, "%s %q", name, value)
			assert.Positive(t, n, name)
		case name == "WORKER_PROVISION", name == "WORKER_FOLLOW", name == "CCKM_INSECURE_SKIP_VERIFY":
			_, err := strconv.ParseBool(value)
			assert.NoError(t, err, "%s %q", name, value)
		}
	}
	assert.Contains(t, []string{"jetstream", "core"}, data["WORKER_MODE"])
	assert.Contains(t, []string{"json", "console"}, data["LOG_FORMAT"])
	assert.NotEqual(t, "true", data["CCKM_INSECURE_SKIP_VERIFY"], "verification stays on in production")
}

func TestTheDeploymentTakesTheConfigMapAndTheSecretFiles(t *testing.T) {
	m := loadManifests(t)
	c := m.worker()
	var configMaps []string
	for _, from := range c.EnvFrom {
		assert.Nil(t, from.SecretRef, "secrets come as files, not as variables")
		if from.ConfigMapRef != nil {
			configMaps = append(configMaps, from.ConfigMapRef.Name)
		}
	}
	assert.Equal(t, []string{m.configMap.Metadata.Name}, configMaps)

	secretKeys := map[string]bool{}
	for key := range m.secret.StringData {
		secretKeys[key] = true
	}
	for key := range m.secret.Data {
		secretKeys[key] = true
	}
	// Where each secret volume is mounted, and which files it shows.
	mounted := map[string]map[string]bool{} // mount path -> file names
	for _, mount := range c.VolumeMounts {
		for _, vol := range m.deployment.Spec.Template.Spec.Volumes {
			if vol.Name != mount.Name || vol.Secret == nil {
				continue
			}
			assert.Equal(t, m.secret.Metadata.Name, vol.Secret.SecretName, "volume %s", vol.Name)
			assert.True(t, mount.ReadOnly, "secret mount %s is read-only", mount.MountPath)
			files := map[string]bool{}
			if len(vol.Secret.Items) == 0 {
				files = secretKeys
			}
			for _, item := range vol.Secret.Items {
				assert.True(t, secretKeys[item.Key], "volume %s: no key %s in the Secret", vol.Name, item.Key)
				files[item.Path] = true
			}
			mounted[filepath.Clean(mount.MountPath)] = files
		}
	}
	require.NotEmpty(t, mounted, "the Secret is mounted")

	fileVars := 0
	for _, env := range c.Env {
		if from := env.ValueFrom; from != nil && from.SecretKeyRef != nil {
			assert.Equal(t, m.secret.Metadata.Name, from.SecretKeyRef.Name, "env %s", env.Name)
			assert.True(t, secretKeys[from.SecretKeyRef.Key], "env %s: no key %s in the Secret", env.Name, from.SecretKeyRef.Key)
			assert.False(t, workerSettings(t)[env.Name].secret, "secret %s comes as a file, not a variable", env.Name)
		}
		if !strings.HasSuffix(env.Name, "_FILE") {
			continue
		}
		fileVars++
		dir, file := filepath.Split(env.Value)
		files, ok := mounted[filepath.Clean(dir)]
		if assert.True(t, ok, "%s=%s: nothing is mounted at %s", env.Name, env.Value, dir) {
			assert.True(t, files[file], "%s=%s: the Secret has no key %s", env.Name, env.Value, file)
		}
	}
	assert.Positive(t, fileVars, "CipherTrust Manager credentials come from _FILE variables")
}

func TestTheProbesAskHealthAndReadinessOnTheHTTPPort(t *testing.T) {
	m := loadManifests(t)
	c := m.worker()
	port := m.httpPort(t)
	for name, want := range map[string]struct {
		probe *probe
		path  string
	}{
		"liveness":  {c.LivenessProbe, "/healthz"},
		"readiness": {c.ReadinessProbe, "/readyz"},
	} {
		require.NotNil(t, want.probe, "%s probe", name)
		require.NotNil(t, want.probe.HTTPGet, "%s probe is an HTTP GET", name)
		assert.Equal(t, want.path, want.probe.HTTPGet.Path, "%s probe path", name)
		assert.Equal(t, port, m.containerPort(t, want.probe.HTTPGet.Port), "%s probe port against HTTP_ADDR", name)
	}
	assert.Equal(t, port, m.containerPort(t, "http"), "the container port named http is HTTP_ADDR's")
	assert.Contains(t, loadImage(t).exposed, strconv.Itoa(port), "the image exposes it")
}

func TestTheWorkerRunsAsTheImagesNonRootUserLockedDown(t *testing.T) {
	m := loadManifests(t)
	pod := m.deployment.Spec.Template.Spec
	c := m.worker()
	uid, _, _ := strings.Cut(loadImage(t).user, ":")
	assert.True(t, pod.SecurityContext.RunAsNonRoot)
	assert.Equal(t, uid, strconv.Itoa(pod.SecurityContext.RunAsUser), "runAsUser is the image's USER")
	assert.True(t, c.SecurityContext.ReadOnlyRootFilesystem)
	require.NotNil(t, c.SecurityContext.AllowPrivilegeEscalation)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	assert.Equal(t, []string{"ALL"}, c.SecurityContext.Capabilities.Drop)
	assert.NotEmpty(t, c.Resources.Requests["cpu"], "a CPU request")
	assert.NotEmpty(t, c.Resources.Requests["memory"], "a memory request")
	assert.NotEmpty(t, c.Resources.Limits["memory"], "a memory limit")
}

func TestTheDeploymentOutlastsTheWorkersDrain(t *testing.T) {
	m := loadManifests(t)
	shutdown := durationSetting(t, m.configMap.Data, "WORKER_SHUTDOWN_TIMEOUT", worker.DefaultShutdownTimeout)
	grace := time.Duration(m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	assert.Greater(t, grace, drainTime(shutdown), "terminationGracePeriodSeconds against WORKER_SHUTDOWN_TIMEOUT")
	assert.GreaterOrEqual(t, m.deployment.Spec.Replicas, 2, "more than one instance, for the PodDisruptionBudget to mean something")
}

func TestSelectorsFindThePods(t *testing.T) {
	m := loadManifests(t)
	pods := m.podLabels()
	assert.True(t, selects(m.deployment.Spec.Selector.MatchLabels, pods), "Deployment selector")
	assert.True(t, selects(m.service.Spec.Selector, pods), "Service selector")
	assert.True(t, selects(m.pdb.Spec.Selector.MatchLabels, pods), "PodDisruptionBudget selector")
	assert.Equal(t, 1, m.pdb.Spec.MinAvailable, "PodDisruptionBudget minAvailable")
	assert.Less(t, 1, m.deployment.Spec.Replicas, "minAvailable 1 of more than one replica lets a node drain")
	assert.True(t, selects(m.serviceMonitor.Spec.Selector.MatchLabels, m.service.Metadata.Labels), "ServiceMonitor selector")
}

func TestPrometheusScrapesTheMetricsPort(t *testing.T) {
	m := loadManifests(t)
	port := m.httpPort(t)
	annotations := m.deployment.Spec.Template.Metadata.Annotations
	assert.Equal(t, "true", annotations["prometheus.io/scrape"])
	assert.Equal(t, strconv.Itoa(port), annotations["prometheus.io/port"])
	assert.Equal(t, "/metrics", annotations["prometheus.io/path"])

	servicePorts := map[string]bool{}
	for _, p := range m.service.Spec.Ports {
		servicePorts[p.Name] = true
		assert.Equal(t, port, m.containerPort(t, p.TargetPort), "service port %s targets HTTP_ADDR's port", p.Name)
	}
	require.NotEmpty(t, m.serviceMonitor.Spec.Endpoints)
	for _, endpoint := range m.serviceMonitor.Spec.Endpoints {
		assert.True(t, servicePorts[endpoint.Port], "ServiceMonitor port %q is a Service port", endpoint.Port)
		assert.Equal(t, "/metrics", endpoint.Path)
	}
}

func TestTheKustomizationListsTheManifests(t *testing.T) {
	m := loadManifests(t)
	k := m.kustomization
	for _, resource := range k.Resources {
		assert.FileExists(t, filepath.Join(k8sDir, resource))
	}
	paths, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	require.NoError(t, err)
	for _, path := range paths {
		name := filepath.Base(path)
		if name == "kustomization.yaml" || strings.Contains(name, ".example.") || strings.Contains(name, ".optional.") {
			assert.NotContains(t, k.Resources, name, "%s is not applied", name)
			continue
		}
		assert.Contains(t, k.Resources, name, "%s is listed", name)
	}
	images := map[string]bool{}
	for _, image := range k.Images {
		images[image.Name] = true
		assert.NotEmpty(t, image.NewName+image.NewTag, "image %s is rewritten", image.Name)
	}
	assert.True(t, images[imageRepository(m.worker().Image)], "kustomization rewrites the Deployment's image %s", m.worker().Image)
	if k.Namespace != "" && slices.Contains(k.Resources, "namespace.yaml") {
		ns := only[k8sObject](t, filepath.Join(k8sDir, "namespace.yaml"))
		assert.Equal(t, k.Namespace, ns.Metadata.Name)
	}
}

func TestTheSecretExampleIsNotAppliedByAccident(t *testing.T) {
	m := loadManifests(t)
	assert.Equal(t, filepath.Clean(secretExamplePath), filepath.Clean(m.kinds["Secret"]))
	_, err := os.Stat(secretExamplePath)
	require.NoError(t, err)
	assert.Equal(t, "Opaque", m.secret.Type)
}
