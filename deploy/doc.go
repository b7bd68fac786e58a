// Package deploy holds no code. The directory holds the container image
// (Dockerfile), the Kubernetes manifests (k8s/) and the JetStream stream and
// consumer definitions (nats/); the package's tests parse them, and the
// repository's docker-compose.yml, and check that they agree with each other
// and with the worker. See README.md.
package deploy
