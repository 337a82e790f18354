package auth

import (
	"strings"
	"testing"

	"github.com/alexedwards/argon2id"
)

func TestHashAndCheckPassword(t *testing.T) {
	hash, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not carry the OWASP parameters", hash)
	}
	ok, err := CheckPassword("correct horse battery staple", hash)
	if err != nil || !ok {
		t.Fatalf("CheckPassword(right) = %v, %v; want true, nil", ok, err)
	}
	ok, err = CheckPassword("correct horse battery stapler", hash)
	if err != nil || ok {
		t.Fatalf("CheckPassword(wrong) = %v, %v; want false, nil", ok, err)
	}
}

func TestCheckPasswordMalformedHash(t *testing.T) {
	valid := dummyHash()
	cases := map[string]string{
		"empty":         "",
		"garbage":       "not-a-hash",
		"bcrypt":        "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"zero rounds":   strings.Replace(valid, "t=2", "t=0", 1),
		"zero lanes":    strings.Replace(valid, "p=1", "p=0", 1),
		"empty key":     valid[:strings.LastIndex(valid, "$")+1],
		"huge memory":   strings.Replace(valid, "m=19456", "m=4000000000", 1),
		"bad base64":    valid + "!",
		"wrong version": strings.Replace(valid, "v=19", "v=16", 1),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			ok, err := CheckPassword("pw", h)
			if err == nil || ok {
				t.Fatalf("CheckPassword(%q) = %v, %v; want false and an error", h, ok, err)
			}
		})
	}
}

// The dummy must cost exactly what a real stored hash costs, or timing reveals unknown emails.
func TestDummyHashMatchesRealParams(t *testing.T) {
	p, _, _, err := argon2id.DecodeHash(dummyHash())
	if err != nil {
		t.Fatalf("dummy hash does not decode: %v", err)
	}
	if *p != *passwordParams() {
		t.Fatalf("dummy params %+v, want %+v", *p, *passwordParams())
	}
	if err := checkStoredParams(p); err != nil {
		t.Fatalf("dummy hash would be rejected before hashing: %v", err)
	}
	CheckPasswordAgainstNothing("anything") // must not panic
}

// TestTestHasher: the test suites' cheap hashes verify exactly like production ones, and its
// unknown-account check costs what its hashes cost, not the production parameters.
func TestTestHasher(t *testing.T) {
	h := TestHasher()
	hash, err := h.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := CheckPassword("correct horse", hash); !ok || err != nil {
		t.Fatalf("CheckPassword(right) = %v, %v", ok, err)
	}
	if ok, err := CheckPassword("wrong horse", hash); ok || err != nil {
		t.Fatalf("CheckPassword(wrong) = %v, %v", ok, err)
	}
	p, _, _, err := argon2id.DecodeHash(hash)
	if err != nil || p.Memory != 64 || p.Iterations != 1 {
		t.Fatalf("TestHasher params = %+v, %v; want m=64 t=1", p, err)
	}
	if prod, _ := (Hasher{}).Hash("x"); !strings.Contains(prod, "m=19456,t=2,p=1") {
		t.Fatalf("the zero Hasher hashed %q, want the production parameters", prod)
	}
	h.CheckAgainstNothing("anything") // must not panic
}
