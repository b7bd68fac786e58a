package cckmclient

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Secret is a credential. Every way of printing it (%v, %s, %#v, JSON)
// shows a mask, so a Secret can sit in a logged struct without leaking;
// Reveal returns the value for the one place that sends it.
type Secret string

const secretMask = "****"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String masks the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return secretMask
}

// GoString masks the secret in %#v.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// Format masks the secret under every verb, %x and %d included.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = fmt.Fprint(f, s.GoString())
		return
	}
	_, _ = fmt.Fprint(f, s.String())
}

// MarshalJSON masks the secret.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText masks the secret (zerolog and encoding packages use it).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ResolveSecret returns a secret given either directly or through a file,
// as a pair of variables NAME and NAME_FILE does. name is the variable's
// name, used in errors. A file's content is trimmed of surrounding white
// space, such as a final newline. Giving both is an error.
func ResolveSecret(name, value, file string) (Secret, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("%s and %s_FILE are both set: set one", name, name)
	}
	if file == "" {
		return Secret(value), nil
	}
	content, err := os.ReadFile(file)
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		return "", fmt.Errorf("%s_FILE: read %s: %w", name, file, err)
	}
	secret := strings.TrimSpace(string(content))
	if secret == "" {
		return "", fmt.Errorf("%s_FILE: %s is empty", name, file)
	}
	return Secret(secret), nil
}

// Credentials say how the client authenticates to CipherTrust Manager.
// Exactly one mode is used: a static Token; or a RefreshToken, with
// Username and Password as a fallback when given; or Username and Password
// (with an optional Domain).
type Credentials struct {
	Token        Secret
	Username     string
	Password     Secret
	Domain       string
	RefreshToken Secret
}

// Mode names the credential mode in use: "token", "refresh_token",
// "password", or "" when none is set.
func (c Credentials) Mode() string {
	switch {
	case c.Token != "":
		return "token"
	case c.RefreshToken != "":
		return "refresh_token"
	case c.Username != "" || c.Password != "":
		return "password"
	}
	return ""
}

// Validate reports the first problem with the credentials, naming the
// variable to fix.
func (c Credentials) Validate() error {
	switch c.Mode() {
	case "":
		return errors.New("CCKM_TOKEN, CCKM_USERNAME and CCKM_PASSWORD, or CCKM_REFRESH_TOKEN: one is required")
	case "token":
		if c.Username != "" || c.Password != "" || c.RefreshToken != "" {
			return errors.New("CCKM_TOKEN is a static token: do not combine it with CCKM_USERNAME, CCKM_PASSWORD or CCKM_REFRESH_TOKEN")
		}
	}
	if c.Username != "" && c.Password == "" {
		return errors.New("CCKM_PASSWORD is required with CCKM_USERNAME")
	}
	if c.Password != "" && c.Username == "" {
		return errors.New("CCKM_USERNAME is required with CCKM_PASSWORD")
	}
	return nil
}

// secrets lists the credential values, for scrubbing text that leaves the
// client.
func (c Credentials) secrets() []Secret {
	var out []Secret
	for _, s := range []Secret{c.Token, c.Password, c.RefreshToken} {
		if len(s) >= minScrubbed {
			out = append(out, s)
		}
	}
	return out
}

// minScrubbed is the shortest secret scrubbed out of server text: a shorter
// one would mask ordinary letters of every message.
const minScrubbed = 4
