package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
)

func TestARefusedLoginNamesTheSettingsItWasMadeWith(t *testing.T) {
	for _, tc := range []struct {
		name  string
		creds cckmclient.Credentials
		want  string
	}{
		{"a password", cckmclient.Credentials{Username: "u", Password: "p"}, "CCKM_USERNAME/CCKM_PASSWORD"},
		{"a refresh token", cckmclient.Credentials{RefreshToken: "r"}, "CCKM_REFRESH_TOKEN"},
		{"a refresh token with a password to fall back on", cckmclient.Credentials{RefreshToken: "r", Username: "u", Password: "p"},
			"CCKM_REFRESH_TOKEN and CCKM_USERNAME/CCKM_PASSWORD"},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, credentialSetting(tc.creds)) })
	}
}
