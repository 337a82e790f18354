package email_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/email"
	"github.com/taskgraph/taskgraph/internal/email/emailtest"
)

const from = "Taskgraph <noreply@taskgraph.test>"

// sender parses rawURL and tlsMode like the settings do, trusting srv's certificate.
func sender(t *testing.T, srv *emailtest.Server, rawURL, tlsMode string) *email.Sender {
	t.Helper()
	cfg, err := email.ParseConfig(rawURL, from, tlsMode)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	cfg.RootCAs, cfg.Timeout = srv.RootCAs, 5*time.Second
	s, err := email.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func message(s *email.Sender) email.Message {
	return email.Message{
		To:        "ada@example.com",
		Subject:   "Bob assigned you “Ship it”",
		Text:      "Bob assigned you “Ship it”\n\nA second line.\n",
		MessageID: s.MessageID("notification.0b9f"),
		Date:      time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSendDeliversThePlainTextMessage(t *testing.T) {
	srv := emailtest.NewServer(t, emailtest.Options{})
	s := sender(t, srv, srv.URL(""), email.TLSNone)
	if err := s.Send(ctx(t), message(s)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.Received()
	if len(got) != 1 {
		t.Fatalf("received %d messages, want 1", len(got))
	}
	m := got[0]
	if m.From != "noreply@taskgraph.test" || len(m.To) != 1 || m.To[0] != "ada@example.com" {
		t.Errorf("envelope from %q to %q", m.From, m.To)
	}
	for header, want := range map[string]string{
		"Message-Id":     "<notification.0b9f@taskgraph.test>",
		"To":             "<ada@example.com>",
		"From":           `"Taskgraph" <noreply@taskgraph.test>`,
		"Auto-Submitted": "auto-generated",
		"Date":           "Sun, 29 Nov 2026 12:00:00 +0000",
	} {
		if v := m.Header.Get(header); v != want {
			t.Errorf("%s: %q, want %q", header, v, want)
		}
	}
	if !strings.HasPrefix(m.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", m.Header.Get("Content-Type"))
	}
	if m.Subject != "Bob assigned you “Ship it”" {
		t.Errorf("subject %q", m.Subject)
	}
	if strings.ReplaceAll(m.Text, "\r\n", "\n") != "Bob assigned you “Ship it”\n\nA second line.\n" {
		t.Errorf("text %q", m.Text)
	}
}

func TestStartTLSWithLogin(t *testing.T) {
	srv := emailtest.NewServer(t, emailtest.Options{StartTLS: true, Users: map[string]string{"mailer": "s3cret pw"}})
	s := sender(t, srv, srv.URL("mailer:s3cret%20pw"), "") // starttls is the default
	if err := s.Send(ctx(t), message(s)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if n, logins := len(srv.Received()), srv.Logins(); n != 1 || len(logins) != 1 || logins[0] != "mailer" {
		t.Fatalf("received %d, logins %q; want 1 message after logging in as mailer", n, logins)
	}
}

func TestImplicitTLS(t *testing.T) {
	srv := emailtest.NewServer(t, emailtest.Options{ImplicitTLS: true, Users: map[string]string{"mailer": "pw"}})
	s := sender(t, srv, srv.URL("mailer:pw"), "")
	if err := s.Send(ctx(t), message(s)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if n := len(srv.Received()); n != 1 {
		t.Fatalf("received %d messages, want 1", n)
	}
}

// The default (starttls) never falls back to plain text: a server without STARTTLS gets nothing,
// and the failure is worth retrying (the server may be fixed).
func TestStartTLSIsRequiredByDefault(t *testing.T) {
	srv := emailtest.NewServer(t, emailtest.Options{})
	s := sender(t, srv, srv.URL(""), "")
	err := s.Send(ctx(t), message(s))
	if err == nil || email.Permanent(err) || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("Send to a server without STARTTLS: %v; want a temporary STARTTLS error", err)
	}
	if srv.Attempts() != 0 || len(srv.Received()) != 0 {
		t.Fatal("the message was sent without TLS")
	}
}

// A certificate the client does not trust ends the connection before anything is sent.
func TestUntrustedCertificateIsRefused(t *testing.T) {
	srv := emailtest.NewServer(t, emailtest.Options{StartTLS: true, Users: map[string]string{"mailer": "pw"}})
	cfg, err := email.ParseConfig(srv.URL("mailer:pw"), from, "")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := email.NewSender(cfg) // system roots: the test certificate is unknown
	if err := s.Send(ctx(t), message(s)); err == nil || email.Permanent(err) {
		t.Fatalf("Send with an untrusted certificate: %v; want a temporary error", err)
	}
	if len(srv.Logins()) != 0 || len(srv.Received()) != 0 {
		t.Fatal("credentials or mail went to an unverified server")
	}
}

func TestReplyCodesDecidePermanence(t *testing.T) {
	for _, tc := range []struct {
		reply     error
		code      int
		permanent bool
	}{
		{emailtest.Reply(451, "greylisted, try again later"), 451, false},
		{emailtest.Reply(452, "mailbox full"), 452, false},
		{emailtest.Reply(550, "no such user"), 550, true},
		{emailtest.Reply(553, "mailbox name not allowed"), 553, true},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			srv := emailtest.NewServer(t, emailtest.Options{Replies: []error{tc.reply}})
			s := sender(t, srv, srv.URL(""), email.TLSNone)
			err := s.Send(ctx(t), message(s))
			var e *email.Error
			if !errors.As(err, &e) || e.Code != tc.code || email.Permanent(err) != tc.permanent {
				t.Fatalf("Send: %v (%+v); want code %d, permanent %v", err, e, tc.code, tc.permanent)
			}
			// The next attempt gets through.
			if err := s.Send(ctx(t), message(s)); err != nil || len(srv.Received()) != 1 {
				t.Fatalf("second attempt: %v, %d received", err, len(srv.Received()))
			}
		})
	}
}

// A refused login is our settings' fault, not the message's: retried, never permanent.
func TestWrongPasswordIsTemporary(t *testing.T) {
	srv := emailtest.NewServer(t, emailtest.Options{StartTLS: true, Users: map[string]string{"mailer": "right"}})
	s := sender(t, srv, srv.URL("mailer:wrong-password-xyz"), "")
	err := s.Send(ctx(t), message(s))
	var e *email.Error
	if !errors.As(err, &e) || e.Code != 535 || email.Permanent(err) {
		t.Fatalf("Send with a wrong password: %v; want a temporary 535", err)
	}
	if strings.Contains(err.Error(), "wrong-password-xyz") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

func TestUnreachableServerIsTemporary(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg, err := email.ParseConfig("smtp://"+addr, from, email.TLSNone)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := email.NewSender(cfg)
	if err := s.Send(ctx(t), message(s)); err == nil || email.Permanent(err) {
		t.Fatalf("Send to a closed port: %v; want a temporary error", err)
	}
}

func TestInvalidRecipientIsPermanent(t *testing.T) {
	srv := emailtest.NewServer(t, emailtest.Options{})
	s := sender(t, srv, srv.URL(""), email.TLSNone)
	m := message(s)
	m.To = "not an address"
	if err := s.Send(ctx(t), m); !email.Permanent(err) {
		t.Fatalf("Send to %q: %v; want a permanent error", m.To, err)
	}
	if srv.Attempts() != 0 {
		t.Fatal("an invalid address reached the server")
	}
}

// A send in progress ends with its context (a job timeout or shutdown), not after the SMTP timeout.
func TestSendEndsWithItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts, then never says a word
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg, err := email.ParseConfig("smtp://"+ln.Addr().String(), from, email.TLSNone)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := email.NewSender(cfg)
	// Cancelled, not timed out: go-mail's own timeouts (30s) know nothing of it.
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	if err := s.Send(c, message(s)); err == nil || email.Permanent(err) {
		t.Fatalf("Send to a silent server: %v; want a temporary error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Send took %s, its context was cancelled after 300ms", d)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		url, tls string
		want     string // Config.String, or the error's text
	}{
		{"smtp://mail.example.com", "", "smtp://mail.example.com:587 tls=starttls from=\"Taskgraph\" <noreply@taskgraph.test>"},
		{"smtps://u:p@mail.example.com", "", "smtps://u:xxxxx@mail.example.com:465 tls=implicit from=\"Taskgraph\" <noreply@taskgraph.test>"},
		{"smtp://127.0.0.1:1025", "none", "smtp://127.0.0.1:1025 tls=none"},
		{"smtp://u:p@mail.example.com:25", "STARTTLS", "smtp://u:xxxxx@mail.example.com:25 tls=starttls"},
		{"smtp://u:p@127.0.0.1:1025", "none", "error: credentials need TLS"},
		{"smtps://mail.example.com", "none", "error: SMTP_TLS=none contradicts smtps://"},
		{"smtp://mail.example.com", "opportunistic", "error: SMTP_TLS must be starttls or none"},
		{"http://mail.example.com", "", "error: must be smtp://"},
		{"smtp://mail.example.com/path", "", "error: must be smtp://"},
		{"smtp://mail.example.com?auth=plain", "", "error: must be smtp://"},
		{"smtp://:587", "", "error: must be smtp://"},
		{"smtp://u:hunter2pw@mail.example.com:99999", "", "error: the port must be between"},
		{"smtp://u:hunter2pw@mail.example.com:x", "", "error: must be smtp://"},
	} {
		cfg, err := email.ParseConfig(tc.url, from, tc.tls)
		got := cfg.String()
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("ParseConfig(%q, tls=%q) = %s; want %s...", tc.url, tc.tls, got, tc.want)
		}
		if strings.Contains(got, "hunter2pw") || (strings.Contains(tc.url, ":p@") && strings.Contains(got, ":p@")) {
			t.Errorf("ParseConfig(%q) shows the password: %s", tc.url, got)
		}
	}
	if _, err := email.ParseConfig("smtp://mail.example.com", "not an address", ""); err == nil || !strings.Contains(err.Error(), "SMTP_FROM") {
		t.Errorf("a bad SMTP_FROM: %v", err)
	}
}

// The password never reaches a log, whether the config is logged as a value, a group or with %v.
func TestConfigNeverLogsThePassword(t *testing.T) {
	const password = "pa55-w0rd-secret"
	cfg, err := email.ParseConfig("smtps://mailer:"+password+"@mail.example.com", from, "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("smtp", "config", cfg, "ptr", &cfg)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("smtp", "config", cfg)
	fmt.Fprintf(&buf, "%v %+v %s\n", cfg, cfg, cfg)
	if strings.Contains(buf.String(), password) {
		t.Fatalf("the password reached the output:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "mailer:xxxxx@mail.example.com:465") {
		t.Fatalf("the output lacks the masked URL:\n%s", buf.String())
	}
}

// No credentials are offered over a connection without TLS, whatever the server advertises.
func TestNoCredentialsWithoutTLS(t *testing.T) {
	if _, err := email.NewSender(email.Config{Host: "127.0.0.1", Port: 25, TLS: email.TLSNone, Username: "u", Password: "p"}); err == nil {
		t.Fatal("NewSender accepted credentials without TLS")
	}
}
