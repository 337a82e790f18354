// Package emailtest runs a real SMTP server on loopback for tests (what httptest.Server is to HTTP):
// it records the mail it accepts, and can refuse recipients with chosen replies, offer STARTTLS or
// implicit TLS with a throwaway certificate, and require a login.
package emailtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options shape a Server. The zero value is a plain-SMTP server that accepts everything.
type Options struct {
	// StartTLS offers STARTTLS; ImplicitTLS speaks TLS from the first byte (smtps). Both use a
	// certificate for 127.0.0.1 that RootCAs trusts.
	StartTLS    bool
	ImplicitTLS bool
	// Users, when set, requires AUTH PLAIN (offered over TLS only) with one of these
	// username/password pairs before any mail.
	Users map[string]string
	// Replies answer the n-th RCPT TO (Replies[n-1]; nil or past the end: accept). Build them with
	// Reply.
	Replies []error
	// DataReplies answer the n-th message, once its content has arrived (DataReplies[n-1]; nil or
	// past the end: accept). A refused message is in Data, not in Received.
	DataReplies []error
}

// Reply is an SMTP error reply, e.g. Reply(451, "try again later").
func Reply(code int, message string) error {
	class := code / 100
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{class, 0, 0}, Message: message}
}

// Mail is one accepted message.
type Mail struct {
	From string
	To   []string
	Raw  []byte
	// Header and Body are Raw parsed (Body as sent, still transfer-encoded).
	Header mail.Header
	Body   string
	// Subject and Text are decoded (RFC 2047 words, quoted-printable).
	Subject string
	Text    string
}

// Server is a running SMTP server on 127.0.0.1.
type Server struct {
	Host    string
	Port    int
	RootCAs *x509.CertPool // trusts the server's certificate (TLS options)

	opts Options
	srv  *smtp.Server

	mu       sync.Mutex
	rcpts    int
	data     []Mail // every message whose content arrived, accepted or not
	received []Mail
	logins   []string
}

// NewServer starts a server; it stops when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.ErrorLog = discardLogger{}
	var tlsCfg *tls.Config
	if opts.StartTLS || opts.ImplicitTLS {
		cert, pool, err := selfSigned()
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.RootCAs = pool
		if opts.StartTLS {
			srv.TLSConfig = tlsCfg
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.ImplicitTLS {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.srv = srv
	addr := ln.Addr().(*net.TCPAddr)
	s.Host, s.Port = "127.0.0.1", addr.Port
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// URL is an SMTP_URL for the server (smtps:// with ImplicitTLS), with userinfo when given.
func (s *Server) URL(userinfo string) string {
	scheme := "smtp"
	if s.opts.ImplicitTLS {
		scheme = "smtps"
	}
	if userinfo != "" {
		userinfo += "@"
	}
	return scheme + "://" + userinfo + s.Addr()
}

// Received returns the mail accepted so far.
func (s *Server) Received() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.received...)
}

// Data returns every message whose content arrived, accepted or refused.
func (s *Server) Data() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.data...)
}

// Attempts counts the RCPT TO commands seen: one per delivery attempt of a one-recipient message.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcpts
}

// Logins lists the usernames that logged in.
func (s *Server) Logins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

type session struct {
	s        *Server
	loggedIn bool
	from     string
	to       []string
}

func (ss *session) needLogin() error {
	if len(ss.s.opts.Users) > 0 && !ss.loggedIn {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (ss *session) AuthMechanisms() []string {
	if len(ss.s.opts.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if want, ok := ss.s.opts.Users[username]; !ok || want != password {
			return smtp.ErrAuthFailed
		}
		ss.loggedIn = true
		ss.s.mu.Lock()
		ss.s.logins = append(ss.s.logins, username)
		ss.s.mu.Unlock()
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if err := ss.needLogin(); err != nil {
		return err
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := ss.needLogin(); err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.rcpts++
	n := ss.s.rcpts
	ss.s.mu.Unlock()
	if n <= len(ss.s.opts.Replies) && ss.s.opts.Replies[n-1] != nil {
		return ss.s.opts.Replies[n-1]
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Mail{From: ss.from, To: ss.to, Raw: raw}
	if msg, err := mail.ReadMessage(strings.NewReader(string(raw))); err == nil {
		body, _ := io.ReadAll(msg.Body)
		m.Header, m.Body, m.Text = msg.Header, string(body), string(body)
		m.Subject, _ = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			text, _ := io.ReadAll(quotedprintable.NewReader(strings.NewReader(m.Body)))
			m.Text = string(text)
		}
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.data = append(ss.s.data, m)
	if n := len(ss.s.data); n <= len(ss.s.opts.DataReplies) && ss.s.opts.DataReplies[n-1] != nil {
		return ss.s.opts.DataReplies[n-1]
	}
	ss.s.received = append(ss.s.received, m)
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// selfSigned makes a certificate for 127.0.0.1 and localhost, and a pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "emailtest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
