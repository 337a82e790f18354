// Package email sends plain-text mail over SMTP (notifications by email): its settings, parsed from
// SMTP_URL, SMTP_FROM and SMTP_TLS; a Sender; and which failures are worth retrying.
//
// The password in SMTP_URL is a secret: Config masks it when printed or logged, and no error this
// package returns contains it.
package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// TLS modes for smtp:// URLs (smtps:// always uses implicit TLS).
const (
	// TLSStartTLS upgrades the connection with STARTTLS before anything else is sent; a server that
	// does not offer it fails the send. The default.
	TLSStartTLS = "starttls"
	// TLSNone speaks plain SMTP, for a development mail catcher or an unauthenticated relay on a
	// trusted network. Credentials are never sent this way.
	TLSNone = "none"
)

// Default ports when SMTP_URL names none: submission (587) for smtp://, submissions (465) for smtps://.
const (
	defaultPort         = 587
	defaultImplicitPort = 465
)

// DefaultTimeout bounds connecting (TLS and login included) and then sending the message, each;
// the caller's context bounds the whole send.
const DefaultTimeout = 30 * time.Second

// Config is where and how to send. Build it with ParseConfig.
type Config struct {
	Host        string
	Port        int
	Username    string
	Password    string // secret: never printed (see LogValue and String)
	ImplicitTLS bool   // smtps://
	TLS         string // smtp://: TLSStartTLS or TLSNone
	From        netmail.Address
	// RootCAs verify the server's certificate; nil: the system's roots. Tests set their own.
	RootCAs *x509.CertPool
	// Timeout bounds connecting and sending, each (DefaultTimeout when zero).
	Timeout time.Duration
}

// errBadURL never quotes the URL: it may hold a password.
var errBadURL = errors.New("must be smtp://[user:password@]host[:port] or smtps://[user:password@]host[:port]")

// ParseConfig reads SMTP_URL (rawURL), SMTP_FROM (from) and SMTP_TLS (tlsMode, TLSStartTLS when
// empty). Credentials are refused without TLS: they would cross the network readable.
func ParseConfig(rawURL, from, tlsMode string) (Config, error) {
	var c Config
	// url.Parse's errors quote the whole URL, password included: report our own instead.
	u, err := url.Parse(rawURL)
	if err != nil || u.Opaque != "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return c, errBadURL
	}
	switch u.Scheme {
	case "smtp":
		c.Port = defaultPort
	case "smtps":
		c.ImplicitTLS, c.Port = true, defaultImplicitPort
	default:
		return c, errBadURL
	}
	c.Host = u.Hostname()
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return c, errors.New("the port must be between 1 and 65535")
		}
		c.Port = n
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	switch tlsMode = strings.ToLower(strings.TrimSpace(tlsMode)); tlsMode {
	case "", TLSStartTLS:
		c.TLS = TLSStartTLS
	case TLSNone:
		if c.ImplicitTLS {
			return c, errors.New("SMTP_TLS=none contradicts smtps:// (implicit TLS): use smtp:// for plain SMTP")
		}
		if c.Username != "" || c.Password != "" {
			return c, errors.New("credentials need TLS: use smtps:// or SMTP_TLS=starttls, or drop them from the URL")
		}
		c.TLS = TLSNone
	default:
		return c, fmt.Errorf("SMTP_TLS must be %s or %s, got %q", TLSStartTLS, TLSNone, tlsMode)
	}
	addr, err := netmail.ParseAddress(from)
	if err != nil {
		return c, fmt.Errorf("SMTP_FROM must be an address such as \"Taskgraph <noreply@example.com>\": %w", err)
	}
	c.From = *addr
	return c, nil
}

// String describes the config without the password.
func (c Config) String() string {
	scheme := "smtp"
	if c.ImplicitTLS {
		scheme = "smtps"
	}
	u := url.URL{Scheme: scheme, Host: c.Host + ":" + strconv.Itoa(c.Port)}
	if c.Username != "" || c.Password != "" {
		u.User = url.UserPassword(c.Username, "xxxxx")
	}
	mode := c.TLS
	if c.ImplicitTLS {
		mode = "implicit"
	}
	return u.String() + " tls=" + mode + " from=" + c.From.String()
}

// LogValue keeps the password out of structured logs.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Message is one plain-text mail to one recipient.
type Message struct {
	To      string
	Subject string
	Text    string
	// MessageID, without angle brackets, names the message: a retry of an ambiguous send reuses it,
	// so mail clients see one message, not two. Empty: a random one.
	MessageID string
	Date      time.Time // zero: now
}

// Sender sends messages, one connection per message (notifications are few and far between; a
// pooled connection would mostly sit idle or be closed by the server).
type Sender struct {
	cfg Config
}

// NewSender returns a Sender for cfg.
func NewSender(cfg Config) (*Sender, error) {
	if cfg.Host == "" || cfg.Port == 0 {
		return nil, errors.New("email: no SMTP host")
	}
	if cfg.TLS == TLSNone && (cfg.Username != "" || cfg.Password != "") {
		return nil, errors.New("email: credentials need TLS")
	}
	return &Sender{cfg: cfg}, nil
}

// MessageID returns a Message-ID whose local part is local and whose domain is the sender's: the
// same local part always gives the same id.
func (s *Sender) MessageID(local string) string {
	domain := "localhost"
	if at := strings.LastIndexByte(s.cfg.From.Address, '@'); at >= 0 && at < len(s.cfg.From.Address)-1 {
		domain = s.cfg.From.Address[at+1:]
	}
	return local + "@" + domain
}

// Send delivers m. Failures are *Error values; Permanent tells whether trying again can help.
func (s *Sender) Send(ctx context.Context, m Message) error {
	msg, err := s.build(m)
	if err != nil {
		return err
	}
	// Whatever happens the connection gets closed: go-mail leaves it open when the greeting, TLS or
	// login fails.
	var held heldConn
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := s.dial(ctx, network, addr)
		if err == nil {
			held.set(c)
		}
		return c, err
	}
	client, err := s.client(ctx, dial)
	if err != nil {
		return &Error{Stage: "setup", err: err}
	}
	defer held.close()
	// go-mail honours ctx only while dialing; closing the connection ends a send in progress too.
	defer context.AfterFunc(ctx, held.close)()
	smtpClient, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		// Connect, TLS, greeting and authentication failures are about the server or our settings,
		// not this message: always worth another try later.
		return &Error{Stage: "connect", Code: replyCode(err), err: err}
	}
	sendErr := client.SendWithSMTPClient(smtpClient, msg)
	_ = client.CloseWithSMTPClient(smtpClient) // QUIT: its failure changes nothing once the message is in
	if msg.IsDelivered() {
		// The server accepted the message; a failed RSET after it does not undo that.
		return nil
	}
	if sendErr == nil {
		return &Error{Stage: "send", err: errors.New("the server did not confirm the message")}
	}
	return classify(sendErr)
}

// heldConn is the connection of one send, closed from another goroutine when the context ends.
type heldConn struct {
	mu   sync.Mutex
	conn net.Conn
}

func (h *heldConn) set(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conn = c
}

func (h *heldConn) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		_ = h.conn.Close()
	}
}

// dial connects, with TLS from the first byte for smtps://.
func (s *Sender) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	if s.cfg.ImplicitTLS {
		return (&tls.Dialer{NetDialer: d, Config: s.tlsConfig()}).DialContext(ctx, network, addr)
	}
	return d.DialContext(ctx, network, addr)
}

func (s *Sender) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: s.cfg.Host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}
}

func (s *Sender) build(m Message) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(&s.cfg.From)
	if err := msg.To(m.To); err != nil {
		// An address the server can never accept: no retry will fix it.
		return nil, &Error{Stage: "address", Permanent: true, err: fmt.Errorf("invalid recipient address: %w", err)}
	}
	msg.Subject(m.Subject)
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.MessageID != "" {
		msg.SetMessageIDWithValue(m.MessageID)
	} else {
		msg.SetMessageID()
	}
	if m.Date.IsZero() {
		msg.SetDate()
	} else {
		msg.SetDateWithValue(m.Date)
	}
	// RFC 3834: machine-written mail; vacation responders and the like should not answer it.
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetUserAgent("Taskgraph")
	return msg, nil
}

func (s *Sender) client(ctx context.Context, dial gomail.DialContextFunc) (*gomail.Client, error) {
	timeout := s.cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl), time.Millisecond))
	}
	opts := []gomail.Option{
		gomail.WithPort(s.cfg.Port),
		gomail.WithTimeout(timeout),
		gomail.WithDialContextFunc(dial),
		gomail.WithTLSConfig(s.tlsConfig()),
		gomail.WithoutNoop(), // a fresh connection needs no liveness check
	}
	if s.cfg.ImplicitTLS || s.cfg.TLS == TLSNone {
		// smtps: dial already speaks TLS; none: plain SMTP. Either way no STARTTLS.
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	} else {
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.cfg.Username != "" || s.cfg.Password != "" {
		opts = append(opts, gomail.WithSMTPAuthCustom(&tlsOnlyAuth{user: s.cfg.Username, pass: s.cfg.Password, host: s.cfg.Host}))
	}
	return gomail.NewClient(s.cfg.Host, opts...)
}

// tlsOnlyAuth picks the strongest mechanism the server offers, and refuses to authenticate at all
// on a connection without TLS (server.TLS is the connection's own state, not what the server says).
type tlsOnlyAuth struct {
	user, pass, host string
	smtp.Auth        // the chosen mechanism, set by Start
}

func (a *tlsOnlyAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("refusing to send credentials without TLS")
	}
	offered := func(mech string) bool { return slices.Contains(server.Auth, mech) }
	switch {
	case offered("SCRAM-SHA-256"):
		a.Auth = smtp.ScramSHA256Auth(a.user, a.pass)
	case offered("SCRAM-SHA-1"):
		a.Auth = smtp.ScramSHA1Auth(a.user, a.pass)
	case offered("PLAIN"):
		a.Auth = smtp.PlainAuth("", a.user, a.pass, a.host, false)
	case offered("LOGIN"):
		a.Auth = smtp.LoginAuth(a.user, a.pass, a.host, false)
	default:
		return "", nil, fmt.Errorf("the server offers no authentication mechanism we use (it offers %q)", strings.Join(server.Auth, " "))
	}
	return a.Auth.Start(server)
}

// Error is a failed send. Permanent means the server refused this message for good (a 5xx reply to
// MAIL FROM, RCPT TO or DATA, or an invalid address): sending it again cannot succeed. Everything
// else (4xx replies, network and TLS failures, a refused login) may succeed on a later try.
type Error struct {
	Stage     string // "connect", "send", "address" or "setup"
	Code      int    // the SMTP reply code; 0 when the server gave none
	Permanent bool
	err       error
}

func (e *Error) Error() string {
	s := "email: " + e.Stage + " failed"
	if e.Permanent {
		s += " (permanent)"
	}
	return s + ": " + e.err.Error()
}

func (e *Error) Unwrap() error { return e.err }

// Permanent reports whether err says that sending the same message again cannot succeed.
func Permanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// classify turns go-mail's send error into an Error.
func classify(err error) error {
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return &Error{Stage: "send", Code: replyCode(err), err: err}
	}
	code := se.ErrorCode()
	permanent := false
	switch se.Reason {
	case gomail.ErrSMTPMailFrom, gomail.ErrSMTPRcptTo, gomail.ErrSMTPData, gomail.ErrSMTPDataClose:
		permanent = code >= 500 && code < 600
	}
	return &Error{Stage: "send", Code: code, Permanent: permanent, err: err}
}

// replyCode is the SMTP reply code inside err, or 0.
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
