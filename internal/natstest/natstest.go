// Package natstest runs embedded NATS servers for tests: a random loopback
// port, JetStream on, the store in the test's temporary directory.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options returns the options RunServer uses, for tests that restart a
// server on the same port and store.
func Options(t testing.TB) *server.Options {
	t.Helper()
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
}

// RunServer starts a server with opts (Options(t) when nil) and shuts it
// down when the test ends.
func RunServer(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	if opts == nil {
		opts = Options(t)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("natstest: server not ready in 10s")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// Connect connects to ns and closes the connection when the test ends.
func Connect(t testing.TB, ns *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// AwaitAcks waits until the stream has acknowledged every publish of acks,
// and fails the test at the first refused or at within.
func AwaitAcks(t testing.TB, acks []jetstream.PubAckFuture, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for _, ack := range acks {
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			t.Fatalf("natstest: a publish was refused: %v", err)
		case <-deadline:
			t.Fatalf("natstest: the stream did not acknowledge every publish within %v", within)
		}
	}
}
