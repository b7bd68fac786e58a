package cckmtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
)

// jwtHeader is the encoded header of every token the fake issues.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// jwtClaims are the claims of an issued token, a subset of those CipherTrust Manager sets.
// IssuedAt is left out when zero.
type jwtClaims struct {
	Issuer            string `json:"iss"`
	Subject           string `json:"sub"`
	IssuedAt          int64  `json:"iat,omitempty"`
	Expires           int64  `json:"exp"`
	ID                string `json:"jwtid"`
	PreferredUsername string `json:"preferred_username"`
}

// signJWT returns a compact HS256 JWT with claims, completed with the issuer and a new
// jwtid. Times are whole seconds (rounded down); the server keeps the exact expiry apart.
func signJWT(key []byte, claims jwtClaims) string {
	claims.Issuer = "kylo"
	claims.ID = newUUID()
	encoded, _ := json.Marshal(claims)
	signingInput := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(encoded)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signingInput))
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
