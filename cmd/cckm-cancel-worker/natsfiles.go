package main

// The files the NATS settings name are read at start, so that a missing or
// wrong one stops the process with one line naming the setting, instead of
// a connection that retries for ever or an error only the log shows.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/cckm/cckm-cancel-worker/internal/nkeyseed"
)

// checkNATSFiles reads NATS_CREDS, NATS_NKEY, NATS_CA_FILE and
// NATS_CERT_FILE with NATS_KEY_FILE as the connection will, and returns a
// startError naming the first that cannot be used. No error quotes a
// file's content: a credentials or key file holds secrets.
func checkNATSFiles(cfg config) error {
	if cfg.Dev {
		return nil // dev mode connects to its own server, without them
	}
	fail := func(format string, args ...any) error { return &startError{fmt.Errorf(format, args...)} }
	read := func(env, path string) ([]byte, error) {
		// An error quotes the path: a file's content given instead of its
		// name (a PEM block, a credentials file, a seed) is not quoted.
		if strings.ContainsAny(path, "\n\r") || strings.Contains(path, "-----") || nkeyseed.Looks(path) {
			return nil, fail("%s: give the name of the file, not its content", env)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fail("%s: %v", env, err)
		}
		return b, nil
	}
	if cfg.NATSCreds != "" {
		if _, err := read("NATS_CREDS", cfg.NATSCreds); err != nil {
			return err
		}
		var opts nats.Options
		if err := nats.UserCredentials(cfg.NATSCreds)(&opts); err != nil {
			return fail("NATS_CREDS %q: %v", cfg.NATSCreds, err)
		}
		_, jwtErr := opts.UserJWT()
		_, seedErr := opts.SignatureCB([]byte("nonce"))
		if jwtErr != nil || seedErr != nil {
			return fail("NATS_CREDS %q: not a NATS credentials file (a user JWT and its NKey seed)", cfg.NATSCreds)
		}
	}
	if cfg.NATSNKey != "" {
		if _, err := read("NATS_NKEY", cfg.NATSNKey); err != nil {
			return err
		}
		if _, err := nats.NkeyOptionFromSeed(cfg.NATSNKey); err != nil {
			return fail("NATS_NKEY %q: holds no NKey user seed", cfg.NATSNKey)
		}
	}
	if cfg.NATSCAFile != "" {
		pem, err := read("NATS_CA_FILE", cfg.NATSCAFile)
		if err != nil {
			return err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fail("NATS_CA_FILE %q: holds no PEM certificate", cfg.NATSCAFile)
		}
	}
	if cfg.NATSCertFile != "" {
		if _, err := read("NATS_CERT_FILE", cfg.NATSCertFile); err != nil {
			return err
		}
		if _, err := read("NATS_KEY_FILE", cfg.NATSKeyFile); err != nil {
			return err
		}
		if _, err := tls.LoadX509KeyPair(cfg.NATSCertFile, cfg.NATSKeyFile); err != nil {
			return fail("NATS_CERT_FILE %q and NATS_KEY_FILE %q: not a certificate and its key: %v", cfg.NATSCertFile, cfg.NATSKeyFile, err)
		}
	}
	return nil
}
