package deploy_test

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The parts of the Kubernetes objects the tests read. Decoding is lenient:
// these are not the full API types.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sObject struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type configMap struct {
	k8sObject `yaml:",inline"`
	Data      map[string]string `yaml:"data"`
}

type secret struct {
	k8sObject  `yaml:",inline"`
	Type       string            `yaml:"type"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deployment struct {
	k8sObject `yaml:",inline"`
	Spec      struct {
		Replicas int           `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
		RunAsUser    int  `yaml:"runAsUser"`
		RunAsGroup   int  `yaml:"runAsGroup"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type container struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
			ConfigMapKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

type service struct {
	k8sObject `yaml:",inline"`
	Spec      struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type podDisruptionBudget struct {
	k8sObject `yaml:",inline"`
	Spec      struct {
		MinAvailable   any           `yaml:"minAvailable"`
		MaxUnavailable any           `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	k8sObject `yaml:",inline"`
	Spec      struct {
		Selector  labelSelector `yaml:"selector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

type kustomization struct {
	k8sObject `yaml:",inline"`
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// manifests are the objects of deploy/k8s, by kind; each kind appears once.
type manifests struct {
	configMap      configMap
	secret         secret // secret.example.yaml
	deployment     deployment
	service        service
	pdb            podDisruptionBudget
	serviceMonitor serviceMonitor
	kustomization  kustomization
	kinds          map[string]string // kind -> file
}

// only decodes a file that must hold exactly one object of type T.
func only[T any](t *testing.T, path string) T {
	t.Helper()
	docs := decodeYAML[T](t, path)
	require.Len(t, docs, 1, "%s holds one object", path)
	return docs[0]
}

// loadManifests reads every YAML file of deploy/k8s.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{kinds: map[string]string{}}
	paths, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, path := range paths {
		for _, obj := range decodeYAML[k8sObject](t, path) {
			require.NotEmpty(t, obj.APIVersion, "%s: apiVersion", path)
			require.NotEmpty(t, obj.Kind, "%s: kind", path)
			if obj.Kind != "Kustomization" {
				require.NotEmpty(t, obj.Metadata.Name, "%s: metadata.name", path)
			}
			require.NotContains(t, m.kinds, obj.Kind, "%s: a second %s", path, obj.Kind)
			m.kinds[obj.Kind] = path
			switch obj.Kind {
			case "ConfigMap":
				m.configMap = only[configMap](t, path)
			case "Secret":
				m.secret = only[secret](t, path)
			case "Deployment":
				m.deployment = only[deployment](t, path)
			case "Service":
				m.service = only[service](t, path)
			case "PodDisruptionBudget":
				m.pdb = only[podDisruptionBudget](t, path)
			case "ServiceMonitor":
				m.serviceMonitor = only[serviceMonitor](t, path)
			case "Kustomization":
				m.kustomization = only[kustomization](t, path)
			}
		}
	}
	for _, kind := range []string{"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "Kustomization"} {
		require.Contains(t, m.kinds, kind)
	}
	require.Len(t, m.deployment.Spec.Template.Spec.Containers, 1, "one container")
	return m
}

// worker is the Deployment's container.
func (m manifests) worker() container { return m.deployment.Spec.Template.Spec.Containers[0] }

// podLabels are the labels of the Deployment's pods.
func (m manifests) podLabels() map[string]string { return m.deployment.Spec.Template.Metadata.Labels }

// containerPort resolves a probe's or service's port: a number, or the name
// of one of the container's ports.
func (m manifests) containerPort(t *testing.T, port any) int {
	t.Helper()
	switch p := port.(type) {
	case int:
		return p
	case string:
		for _, cp := range m.worker().Ports {
			if cp.Name == p {
				return cp.ContainerPort
			}
		}
		if n, err := strconv.Atoi(p); err == nil {
			return n
		}
		t.Fatalf("no container port named %q", p)
	}
	t.Fatalf("port %v: want a number or a name", port)
	return 0
}

// httpPort is the port HTTP_ADDR names in the ConfigMap (or by default).
func (m manifests) httpPort(t *testing.T) int {
	t.Helper()
	addr, ok := m.configMap.Data["HTTP_ADDR"]
	if !ok {
		addr = workerSettings(t)["HTTP_ADDR"].def
	}
	return portOf(t, addr)
}

// selects reports whether a selector's labels are all in labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// k8sImageName is the image the Deployment names, before kustomize
// rewrites it.
func k8sImageName(t *testing.T) string {
	t.Helper()
	return imageRepository(loadManifests(t).worker().Image)
}
