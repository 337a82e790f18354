package userjobs

// Export files are served through signed, expiring URLs: the URL itself is the credential (a
// browser can follow it without an Authorization header), so it names one job, carries its expiry
// and an HMAC over both, and is refused once expired or altered. Only the job's owner is ever given
// one (Result and ExportURL follow the policy for jobs); whoever holds it may download until it
// expires.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// PathPrefix is where export files are served: PathPrefix + <job uuid>.
const PathPrefix = "/exports/"

// Signer makes and checks download URLs.
type Signer struct {
	key       []byte
	publicURL string
	ttl       time.Duration
}

// NewSigner derives the URL key from secret (the server's JWT secret: one secret to rotate, and a
// key of its own so a download signature is never a valid token or cursor); publicURL ("" for
// relative URLs) is prefixed to every URL; ttl is how long a URL works.
func NewSigner(secret []byte, publicURL string, ttl time.Duration) *Signer {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("taskgraph export download urls v1"))
	return &Signer{key: mac.Sum(nil), publicURL: publicURL, ttl: ttl}
}

// URL returns a download URL for jobID's file that works until the returned time: the signer's TTL
// from now, but never past notAfter (when the file itself goes).
func (s *Signer) URL(jobID uuid.UUID, now, notAfter time.Time) (string, time.Time) {
	expires := now.Add(s.ttl)
	if !notAfter.IsZero() && notAfter.Before(expires) {
		expires = notAfter
	}
	expires = expires.Truncate(time.Second)
	q := url.Values{}
	q.Set("expires", strconv.FormatInt(expires.Unix(), 10))
	q.Set("signature", s.sign(jobID, expires.Unix()))
	return s.publicURL + PathPrefix + jobID.String() + "?" + q.Encode(), expires
}

// Errors of Verify; the handler answers both with 403 (and never says which part was wrong beyond that).
var (
	ErrExpired      = errors.New("download URL expired")
	ErrBadSignature = errors.New("download URL signature invalid")
)

// Verify checks a URL's expires and signature query values for jobID.
func (s *Signer) Verify(jobID uuid.UUID, expires, signature string, now time.Time) error {
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: expires is not a number", ErrBadSignature)
	}
	got, err := hex.DecodeString(signature)
	if err != nil || !hmac.Equal(got, s.mac(jobID, exp)) {
		return ErrBadSignature
	}
	if now.Unix() >= exp {
		return ErrExpired
	}
	return nil
}

func (s *Signer) sign(jobID uuid.UUID, expires int64) string {
	return hex.EncodeToString(s.mac(jobID, expires))
}

func (s *Signer) mac(jobID uuid.UUID, expires int64) []byte {
	mac := hmac.New(sha256.New, s.key)
	mac.Write(jobID[:])
	mac.Write([]byte(strconv.FormatInt(expires, 10)))
	return mac.Sum(nil)
}
