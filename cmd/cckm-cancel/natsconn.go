package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/internal/nkeyseed"
)

// defaultURL is the NATS server used when nothing names one.
const defaultURL = "nats://127.0.0.1:4222"

// connSettings says how to reach NATS. Empty fields are unset.
type connSettings struct {
	URL, Creds, NKey, User, Password, Token, CA, Cert, Key string
	// PasswordFile and TokenFile name files holding the password or the
	// token (flags only: resolveConnection reads them into Password and
	// Token), so that no secret has to be on the command line.
	PasswordFile, TokenFile string
	// Context names the nats CLI context to read.
	Context string
	// From a context only: as the nats CLI uses them.
	InboxPrefix, JetStreamDomain, JetStreamAPIPrefix string
	TLSFirst                                         bool
}

// natsContext is a nats CLI context file (NATS ADR-21), the fields this
// command uses.
type natsContext struct {
	URL                string `json:"url"`
	Token              string `json:"token"`
	User               string `json:"user"`
	Password           string `json:"password"`
	Creds              string `json:"creds"`
	NKey               string `json:"nkey"`
	Cert               string `json:"cert"`
	Key                string `json:"key"`
	CA                 string `json:"ca"`
	NSC                string `json:"nsc"`
	UserJWT            string `json:"user_jwt"`
	JetStreamDomain    string `json:"jetstream_domain"`
	JetStreamAPIPrefix string `json:"jetstream_api_prefix"`
	InboxPrefix        string `json:"inbox_prefix"`
	TLSFirst           bool   `json:"tls_first"`
	WindowsCertStore   string `json:"windows_cert_store"`
}

// resolveConnection merges the flags, the environment and the nats
// context: a flag wins over its variable, a variable over the context, and
// the context over the default.
func resolveConnection(flags connSettings, env func(string) string) (connSettings, error) {
	fromEnv := func(names ...string) string {
		for _, name := range names {
			if v := env(name); v != "" {
				return v
			}
		}
		return ""
	}
	ctxName := first(flags.Context, env("NATS_CONTEXT"))
	nctx, err := loadContext(ctxName, env)
	if err != nil {
		return connSettings{}, err
	}
	password, err := resolveSecret(flags.Password, flags.PasswordFile, "--password", env, "NATS_PASSWORD")
	if err != nil {
		return connSettings{}, err
	}
	token, err := resolveSecret(flags.Token, flags.TokenFile, "--token", env, "NATS_TOKEN")
	if err != nil {
		return connSettings{}, err
	}
	home := env("HOME")
	return connSettings{
		URL:                first(flags.URL, fromEnv("NATS_URL"), nctx.URL, defaultURL),
		Creds:              expandHome(first(flags.Creds, fromEnv("NATS_CREDS"), nctx.Creds), home),
		NKey:               expandHome(first(flags.NKey, fromEnv("NATS_NKEY"), nctx.NKey), home),
		User:               first(flags.User, fromEnv("NATS_USER"), nctx.User),
		Password:           first(password, nctx.Password),
		Token:              first(token, nctx.Token),
		CA:                 expandHome(first(flags.CA, fromEnv("NATS_CA", "NATS_CA_FILE"), nctx.CA), home),
		Cert:               expandHome(first(flags.Cert, fromEnv("NATS_CERT", "NATS_CERT_FILE"), nctx.Cert), home),
		Key:                expandHome(first(flags.Key, fromEnv("NATS_KEY", "NATS_KEY_FILE"), nctx.Key), home),
		InboxPrefix:        nctx.InboxPrefix,
		JetStreamDomain:    nctx.JetStreamDomain,
		JetStreamAPIPrefix: nctx.JetStreamAPIPrefix,
		TLSFirst:           nctx.TLSFirst,
	}, nil
}

// resolveSecret returns a secret given on the command line, as flagName or
// flagName-file, else in the environment, as variable or variable_FILE, else
// "". A file's content is trimmed of surrounding white space; a secret given
// both as a value and as a file, at the same level, is an error. Errors name
// the flag or variable and the file, never the secret.
func resolveSecret(value, file, flagName string, env func(string) string, variable string) (string, error) {
	if value != "" || file != "" {
		return secretFrom(value, file, flagName, flagName+"-file")
	}
	return secretFrom(env(variable), env(variable+"_FILE"), variable, variable+"_FILE")
}

// secretFrom is value, or the content of file; valueName and fileName are
// what they are called in errors.
func secretFrom(value, file, valueName, fileName string) (string, error) {
	switch {
	case value != "" && file != "":
		return "", fmt.Errorf("%s and %s are both set: set one", valueName, fileName)
	case file == "":
		return value, nil
	}
	content, err := os.ReadFile(file)
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		return "", fmt.Errorf("%s: read %s: %w", fileName, file, err)
	}
	secret := strings.TrimSpace(string(content))
	if secret == "" {
		return "", fmt.Errorf("%s: %s is empty", fileName, file)
	}
	return secret, nil
}

// loadContext reads the named nats CLI context, or the selected one
// (context.txt) when name is empty. No name and no selection is no
// context. A name with a path separator or ending in .json is a file.
func loadContext(name string, env func(string) string) (natsContext, error) {
	dir, dirErr := natsConfigDir(env)
	explicit := name != ""
	if !explicit {
		if dirErr != nil {
			return natsContext{}, nil
		}
		selected, err := os.ReadFile(filepath.Join(dir, "context.txt"))
		if err != nil {
			return natsContext{}, nil // no context selected
		}
		if name = strings.TrimSpace(string(selected)); name == "" {
			return natsContext{}, nil
		}
	}
	path := name
	if !strings.ContainsAny(name, `/\`) && !strings.HasSuffix(name, ".json") {
		if dirErr != nil {
			return natsContext{}, fmt.Errorf("nats context %q: %w", name, dirErr)
		}
		path = filepath.Join(dir, "context", name+".json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("no such context (%s)", path)
		}
		if !explicit {
			return natsContext{}, fmt.Errorf("nats context %q selected in %s: %w", name, filepath.Join(dir, "context.txt"), err)
		}
		return natsContext{}, fmt.Errorf("nats context %q: %w", name, err)
	}
	var nctx natsContext
	if err := json.Unmarshal(data, &nctx); err != nil {
		return natsContext{}, fmt.Errorf("nats context %s: %w", path, err)
	}
	switch {
	case nctx.NSC != "":
		return natsContext{}, fmt.Errorf("nats context %s: nsc is not supported here; set creds and url instead", path)
	case nctx.UserJWT != "":
		return natsContext{}, fmt.Errorf("nats context %s: user_jwt is not supported here; use a creds file instead", path)
	case nctx.WindowsCertStore != "":
		return natsContext{}, fmt.Errorf("nats context %s: windows_cert_store is not supported here; use cert, key and ca files", path)
	}
	return nctx, nil
}

// natsConfigDir is where the nats CLI keeps its contexts:
// $XDG_CONFIG_HOME/nats, else ~/.config/nats.
func natsConfigDir(env func(string) string) (string, error) {
	if dir := env("XDG_CONFIG_HOME"); dir != "" {
		return filepath.Join(dir, "nats"), nil
	}
	if home := env("HOME"); home != "" {
		return filepath.Join(home, ".config", "nats"), nil
	}
	return "", errors.New("neither XDG_CONFIG_HOME nor HOME is set")
}

// connection is a NATS connection and its JetStream API.
type connection struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	url string // for messages, without credentials
}

// connect opens the connection. Its error is one line naming the server.
func connect(s connSettings) (*connection, error) {
	opts := []nats.Option{nats.Name("cckm-cancel"), nats.Timeout(5 * time.Second)}
	switch {
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	case s.Token != "":
		opts = append(opts, nats.Token(s.Token))
	}
	if s.Creds != "" {
		opts = append(opts, nats.UserCredentials(s.Creds))
	}
	if s.NKey != "" {
		if nkeyseed.Looks(s.NKey) {
			return nil, errors.New("nkey: give the file holding the NKey seed, not the seed itself")
		}
		opt, err := nats.NkeyOptionFromSeed(s.NKey)
		if err != nil {
			return nil, fmt.Errorf("nkey %s: %w", s.NKey, err)
		}
		opts = append(opts, opt)
	}
	if s.CA != "" {
		opts = append(opts, nats.RootCAs(s.CA))
	}
	if s.Cert != "" || s.Key != "" {
		opts = append(opts, nats.ClientCert(s.Cert, s.Key))
	}
	if s.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(s.InboxPrefix))
	}
	if s.TLSFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	shown := redactURLs(s.URL)
	nc, err := nats.Connect(s.URL, opts...)
	if err != nil {
		// nats.go's own error may quote a URL, password and all.
		reason := err.Error()
		for _, part := range strings.Split(s.URL, ",") {
			if part = strings.TrimSpace(part); part != "" {
				reason = strings.ReplaceAll(reason, part, redactURLs(part))
			}
		}
		return nil, fmt.Errorf("cannot connect to NATS at %s: %s", shown, reason)
	}
	var js jetstream.JetStream
	switch {
	case s.JetStreamDomain != "":
		js, err = jetstream.NewWithDomain(nc, s.JetStreamDomain)
	case s.JetStreamAPIPrefix != "":
		js, err = jetstream.NewWithAPIPrefix(nc, s.JetStreamAPIPrefix)
	default:
		js, err = jetstream.New(nc)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream at %s: %w", shown, err)
	}
	return &connection{nc: nc, js: js, url: shown}, nil
}

// redactURLs hides passwords and tokens in a comma-separated URL list. A
// URL without a scheme is read as nats:// (as nats.go reads it); one that
// does not parse is not shown at all, since its user part cannot be found.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, part := range parts {
		part = strings.TrimSpace(part)
		withScheme := part
		if !strings.Contains(part, "://") {
			withScheme = "nats://" + part
		}
		u, err := url.Parse(withScheme)
		switch {
		case err != nil:
			parts[i] = "<unparsable URL>"
		case u.User != nil:
			u.User = nil
			parts[i] = strings.Replace(u.String(), "//", "//****@", 1)
		default:
			parts[i] = part
		}
	}
	return strings.Join(parts, ",")
}

// expandHome turns a leading "~/" into home, as the nats CLI does.
func expandHome(path, home string) string {
	if home != "" && strings.HasPrefix(path, "~/") {
		return filepath.Join(home, path[2:])
	}
	return path
}

// first returns the first non-empty value.
func first(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
