package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// refreshTokenBytes gives 256 bits of entropy: unguessable, so a fast unsalted hash is enough to store it.
const refreshTokenBytes = 32

// NewRefreshToken returns an opaque token for the client and its SHA-256 for the database;
// only the hash is stored, so a leaked table cannot be replayed.
func NewRefreshToken() (token string, hash []byte, err error) {
	buf := make([]byte, refreshTokenBytes)
	if _, err := rand.Read(buf); err != nil {
		return "", nil, fmt.Errorf("new refresh token: read random bytes: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(buf)
	return token, HashRefreshToken(token), nil
}

// HashRefreshToken is the lookup key for a presented refresh token.
func HashRefreshToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
