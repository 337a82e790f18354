package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/alexedwards/argon2id"
)

// OWASP Password Storage Cheat Sheet minimum for argon2id: 19 MiB, 2 passes, 1 lane.
const (
	argonMemoryKiB   = 19456
	argonIterations  = 2
	argonParallelism = 1
	argonSaltLength  = 16
	argonKeyLength   = 32
)

// Bounds on parameters read back from a stored hash: a corrupt row must yield an error, not a panic
// (argon2 panics on t=0 or p=0), an always-matching empty key, or a multi-gigabyte allocation.
const (
	minStoredKeyLength  = 16
	minStoredSaltLength = 8
	maxStoredMemoryKiB  = 1 << 20 // 1 GiB
	maxStoredIterations = 16
)

// passwordParams returns a fresh copy each call so no caller can weaken the parameters for everyone.
func passwordParams() *argon2id.Params {
	return &argon2id.Params{
		Memory:      argonMemoryKiB,
		Iterations:  argonIterations,
		Parallelism: argonParallelism,
		SaltLength:  argonSaltLength,
		KeyLength:   argonKeyLength,
	}
}

// HashPassword returns an argon2id PHC string ($argon2id$v=19$m=19456,t=2,p=1$salt$key) with a random salt.
func HashPassword(password string) (string, error) {
	return Hasher{}.Hash(password)
}

// Hasher hashes new passwords. Its zero value uses the OWASP parameters above; CheckPassword needs
// no Hasher, since it reads the parameters back from each stored hash.
type Hasher struct {
	params *argon2id.Params // nil: passwordParams()
}

// TestHasher is for test suites only: argon2id at 64 KiB and one pass costs microseconds instead of
// tens of milliseconds of CPU per sign-up, and CheckPassword verifies its hashes exactly as any other.
func TestHasher() Hasher {
	p := passwordParams()
	p.Memory, p.Iterations = 64, 1
	return Hasher{params: p}
}

// Hash returns an argon2id PHC string of password with a random salt.
func (h Hasher) Hash(password string) (string, error) {
	params := h.params
	if params == nil {
		params = passwordParams()
	}
	hash, err := argon2id.CreateHash(password, params)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return hash, nil
}

// CheckPassword compares in constant time. A mismatch is (false, nil); only a malformed hash is an error.
func CheckPassword(password, hash string) (bool, error) {
	params, _, _, err := argon2id.DecodeHash(hash)
	if err != nil {
		return false, fmt.Errorf("check password: decode stored hash: %w", err)
	}
	if err := checkStoredParams(params); err != nil {
		return false, fmt.Errorf("check password: %w", err)
	}
	ok, err := argon2id.ComparePasswordAndHash(password, hash)
	if err != nil {
		return false, fmt.Errorf("check password: %w", err)
	}
	return ok, nil
}

// checkStoredParams rejects parameters that would crash argon2, match every password, or exhaust memory.
func checkStoredParams(p *argon2id.Params) error {
	switch {
	case p.Iterations < 1 || p.Iterations > maxStoredIterations:
		return fmt.Errorf("stored hash has unsupported iterations t=%d", p.Iterations)
	case p.Parallelism < 1:
		return errors.New("stored hash has parallelism p=0")
	case p.Memory < 8*uint32(p.Parallelism) || p.Memory > maxStoredMemoryKiB:
		return fmt.Errorf("stored hash has unsupported memory m=%d", p.Memory)
	case p.KeyLength < minStoredKeyLength:
		return fmt.Errorf("stored hash key is too short (%d bytes)", p.KeyLength)
	case p.SaltLength < minStoredSaltLength:
		return fmt.Errorf("stored hash salt is too short (%d bytes)", p.SaltLength)
	}
	return nil
}

// dummyHash is a well-formed hash with the production parameters. It is built by formatting, not
// hashing, so the first unknown-email login costs the same single argon2 run as every later one.
var dummyHash = sync.OnceValue(func() string { return formatDummyHash(passwordParams()) })

func formatDummyHash(p *argon2id.Params) string {
	salt := base64.RawStdEncoding.EncodeToString([]byte(strings.Repeat("s", int(p.SaltLength))))
	key := base64.RawStdEncoding.EncodeToString(make([]byte, p.KeyLength))
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.Memory, p.Iterations, p.Parallelism, salt, key)
}

// CheckPasswordAgainstNothing spends one argon2id comparison so that "unknown email" takes as long as
// "wrong password" and login timing does not reveal which accounts exist.
func CheckPasswordAgainstNothing(password string) {
	_, _ = CheckPassword(password, dummyHash())
}

// CheckAgainstNothing is CheckPasswordAgainstNothing at the cost of h's own hashes, which is what a
// wrong password for an account it created costs.
func (h Hasher) CheckAgainstNothing(password string) {
	if h.params == nil {
		CheckPasswordAgainstNothing(password)
		return
	}
	_, _ = CheckPassword(password, formatDummyHash(h.params))
}
