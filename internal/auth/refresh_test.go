package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

func TestNewRefreshToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, hash, err := NewRefreshToken()
		if err != nil {
			t.Fatalf("NewRefreshToken: %v", err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q is not 32 raw-url-base64 bytes (err %v)", tok, err)
		}
		if seen[tok] {
			t.Fatalf("duplicate token %q", tok)
		}
		seen[tok] = true
		want := sha256.Sum256([]byte(tok))
		if !bytes.Equal(hash, want[:]) {
			t.Fatalf("hash is not SHA-256 of the token string")
		}
		if !bytes.Equal(HashRefreshToken(tok), hash) {
			t.Fatalf("HashRefreshToken disagrees with NewRefreshToken")
		}
	}
	if bytes.Equal(HashRefreshToken("a"), HashRefreshToken("b")) {
		t.Fatal("different tokens hash the same")
	}
}
