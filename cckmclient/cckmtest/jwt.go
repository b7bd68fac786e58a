package cckmtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"
)

// jwtHeader is the encoded header of every token the fake issues.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// jwtClaims are the claims of an issued token, a subset of those CipherTrust Manager sets.
type jwtClaims struct {
	Issuer            string `json:"iss"`
	Subject           string `json:"sub"`
	IssuedAt          int64  `json:"iat"`
	Expires           int64  `json:"exp"`
	ID                string `json:"jwtid"`
	PreferredUsername string `json:"preferred_username"`
}

// signJWT returns a compact HS256 JWT for subject, valid from issued until expires.
// The exp claim is in whole seconds (rounded down); the server keeps the exact expiry.
func signJWT(key []byte, subject, username string, issued, expires time.Time) string {
	claims, _ := json.Marshal(jwtClaims{
		Issuer:            "kylo",
		Subject:           subject,
		IssuedAt:          issued.Unix(),
		Expires:           expires.Unix(),
		ID:                newUUID(),
		PreferredUsername: username,
	})
	signingInput := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(claims)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signingInput))
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
