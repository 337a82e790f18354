package resolvers_test

// Webhook delivery of notifications, through the real API and the real River workers: registering
// (the secret shown once), listing and deleting (private to their user), signed deliveries, retries
// with backoff, cancellation on a 4xx, and refusal of internal addresses.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
	"github.com/taskgraph/taskgraph/internal/webhook"
)

const (
	whRegister = `mutation($input: RegisterWebhookInput!) { registerWebhook(input: $input) { secret webhook { id url createdAt } } }`
	whList     = `{ webhooks { id url createdAt } }`
	whDelete   = `mutation($id: ID!) { deleteWebhook(id: $id) { deletedWebhookId } }`
)

type whHook struct{ ID, URL, CreatedAt string }

// whDevEnv is a server whose webhooks may reach loopback (WEBHOOK_ALLOW_PRIVATE=true) and retry at
// once (WEBHOOK_RETRY_BASE=0s).
func whDevEnv(t *testing.T) *testsupport.Env {
	return testsupport.NewEnv(t, map[string]string{"WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_RETRY_BASE": "0s", "JOBS_IN_PROCESS": "true"})
}

type whDelivery struct {
	Header http.Header
	Body   []byte
}

// whReceiver is a loopback webhook endpoint answering statuses[i] to the i-th request (200 after them).
type whReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []whDelivery
}

func newReceiver(t *testing.T, statuses ...int) *whReceiver {
	r := &whReceiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		i := len(r.got)
		r.got = append(r.got, whDelivery{Header: req.Header.Clone(), Body: body})
		r.mu.Unlock()
		status := http.StatusOK
		if i < len(r.statuses) {
			status = r.statuses[i]
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *whReceiver) deliveries() []whDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func whRegisterOK(t *testing.T, u *testsupport.User, url string) (whHook, string) {
	t.Helper()
	var data struct {
		RegisterWebhook struct {
			Secret  string
			Webhook whHook
		}
	}
	u.Do(t, whRegister, map[string]any{"input": map[string]any{"url": url}}).Decode(t, &data)
	return data.RegisterWebhook.Webhook, data.RegisterWebhook.Secret
}

func whListOf(t *testing.T, u *testsupport.User) []whHook {
	t.Helper()
	var data struct{ Webhooks []whHook }
	u.Do(t, whList, nil).Decode(t, &data)
	return data.Webhooks
}

// whJobStates lists the deliver_webhook jobs as "state/attempt".
func whJobStates(t *testing.T, env *testsupport.Env) []string {
	t.Helper()
	rows, err := env.DB.Pool.Query(context.Background(),
		`SELECT state || '/' || attempt FROM river_job WHERE kind = 'deliver_webhook' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := collectStrings(rows)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func whVerify(t *testing.T, d whDelivery, secretHex string) {
	t.Helper()
	key, err := hex.DecodeString(secretHex)
	if err != nil || len(key) != 32 {
		t.Fatalf("secret %q is not 32 hex-encoded bytes", secretHex)
	}
	ts := d.Header.Get("X-Taskgraph-Timestamp")
	if n, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(n, 0)) > time.Minute {
		t.Fatalf("timestamp %q", ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(ts + "." + string(d.Body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := d.Header.Get("X-Taskgraph-Signature"); !hmac.Equal([]byte(got), []byte(want)) {
		t.Fatalf("signature %q, want %q", got, want)
	}
	if d.Header.Get("X-Taskgraph-Delivery") == "" {
		t.Fatal("no X-Taskgraph-Delivery header")
	}
}

func TestWebhookRegisterListDeleteArePrivate(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: delivers webhooks from background workers")
	}
	t.Parallel()
	env := whDevEnv(t)
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")

	hook, secret := whRegisterOK(t, a, "http://127.0.0.1:9/hook")
	if len(secret) != 64 || hook.ID == "" || hook.URL != "http://127.0.0.1:9/hook" || hook.CreatedAt == "" {
		t.Fatalf("registered %+v with secret of %d chars", hook, len(secret))
	}
	if got := whListOf(t, a); len(got) != 1 || got[0] != hook {
		t.Fatalf("A's webhooks %+v, want [%+v]", got, hook)
	}
	// The secret is not part of Webhook: it cannot be read back.
	if res := a.Do(t, `{ webhooks { id secret } }`, nil); len(res.Errors) == 0 {
		t.Fatal("webhooks { secret } was accepted")
	}
	if strings.Contains(env.Logs.String(), secret) {
		t.Fatal("the secret reached the logs")
	}

	// Another user sees none and cannot delete it.
	if got := whListOf(t, b); len(got) != 0 {
		t.Fatalf("B sees A's webhooks: %+v", got)
	}
	if res := b.Do(t, whDelete, map[string]any{"id": hook.ID}); !slices.Contains(res.Codes(), "NOT_FOUND") {
		t.Fatalf("B deleting A's webhook: %+v, want NOT_FOUND", res.Errors)
	}
	if got := whListOf(t, a); len(got) != 1 {
		t.Fatalf("A's webhook is gone after B's delete: %+v", got)
	}

	// At most 5 per user.
	for i := 2; i <= 5; i++ {
		whRegisterOK(t, a, "http://127.0.0.1:9/hook"+strconv.Itoa(i))
	}
	if res := a.Do(t, whRegister, map[string]any{"input": map[string]any{"url": "http://127.0.0.1:9/6"}}); !slices.Contains(res.Codes(), "BAD_USER_INPUT") {
		t.Fatalf("6th webhook: %+v, want BAD_USER_INPUT", res.Errors)
	}

	// Invalid URLs, even in development.
	for _, url := range []string{"ftp://example.com/x", "https://user:pw@example.com/x", "not a url",
		"https://example.com/" + strings.Repeat("a", 2048)} {
		if res := b.Do(t, whRegister, map[string]any{"input": map[string]any{"url": url}}); !slices.Contains(res.Codes(), "BAD_USER_INPUT") {
			t.Errorf("registering %.60q: %+v, want BAD_USER_INPUT", url, res.Errors)
		}
	}

	var del struct {
		DeleteWebhook struct{ DeletedWebhookID string }
	}
	a.Do(t, whDelete, map[string]any{"id": hook.ID}).Decode(t, &del)
	if del.DeleteWebhook.DeletedWebhookID != hook.ID {
		t.Fatalf("deleted %q, want %q", del.DeleteWebhook.DeletedWebhookID, hook.ID)
	}
	if res := a.Do(t, whDelete, map[string]any{"id": hook.ID}); !slices.Contains(res.Codes(), "NOT_FOUND") {
		t.Fatalf("deleting twice: %+v, want NOT_FOUND", res.Errors)
	}
	if got := whListOf(t, a); len(got) != 4 {
		t.Fatalf("A has %d webhooks after deleting one of 5, want 4", len(got))
	}
}

func TestWebhookDeliversASignedNotificationAfterRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: delivers webhooks from background workers")
	}
	t.Parallel()
	env := whDevEnv(t)
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")
	// The first two attempts fail with 500; the third succeeds.
	recv := newReceiver(t, http.StatusInternalServerError, http.StatusInternalServerError)
	_, secret := whRegisterOK(t, b, recv.URL+"/hook")

	task := asCreateTask(t, a, map[string]any{"title": "Write the report", "assigneeId": b.GlobalID})
	testenv.WaitForState(t, 30*time.Second, "the delivery to complete", func() (bool, string) {
		s := whJobStates(t, env)
		return slices.Equal(s, []string{"completed/3"}), strings.Join(s, ",")
	})
	got := recv.deliveries()
	if len(got) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(got))
	}
	for _, d := range got {
		whVerify(t, d, secret)
		if d.Header.Get("X-Taskgraph-Delivery") != got[0].Header.Get("X-Taskgraph-Delivery") {
			t.Fatal("the delivery id changed between retries")
		}
	}
	var body struct {
		ID, Kind, Message, CreatedAt string
		TaskID                       *string
	}
	if err := json.Unmarshal(got[2].Body, &body); err != nil {
		t.Fatal(err)
	}
	ns := ntAll(t, env, b)
	if len(ns) != 1 || body.ID != ns[0].ID || body.Kind != "TASK_ASSIGNED" ||
		body.Message != "Alice assigned you “Write the report”" || body.TaskID == nil || *body.TaskID != task.ID || body.CreatedAt == "" {
		t.Fatalf("delivered %+v, notifications %+v", body, ns)
	}
	if strings.Contains(env.Logs.String(), secret) {
		t.Fatal("the secret reached the logs")
	}
}

func TestWebhookGoneAnswerCancelsWithoutRetry(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: delivers webhooks from background workers")
	}
	t.Parallel()
	env := whDevEnv(t)
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")
	recv := newReceiver(t, http.StatusGone, http.StatusGone, http.StatusGone)
	whRegisterOK(t, b, recv.URL)

	asCreateTask(t, a, map[string]any{"title": "T", "assigneeId": b.GlobalID})
	testenv.WaitForState(t, 30*time.Second, "the delivery to be cancelled", func() (bool, string) {
		s := whJobStates(t, env)
		return slices.Equal(s, []string{"cancelled/1"}), strings.Join(s, ",")
	})
	// Cancelled is final: River runs the job no more, so the count cannot grow.
	if n := len(recv.deliveries()); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
}

func TestDeletedWebhookGetsNoDeliveries(t *testing.T) {
	t.Parallel()
	env := whDevEnv(t)
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")
	recv := newReceiver(t)
	hook, _ := whRegisterOK(t, b, recv.URL)
	b.Do(t, whDelete, map[string]any{"id": hook.ID}).Decode(t, &struct{}{})

	asCreateTask(t, a, map[string]any{"title": "T", "assigneeId": b.GlobalID})
	if ns := ntAll(t, env, b); len(ns) != 1 { // waits for the notification jobs
		t.Fatalf("B has %d notifications, want 1", len(ns))
	}
	// Deliveries are enqueued in the transaction that writes the notification: had there been one,
	// it would be there now.
	if s := whJobStates(t, env); len(s) != 0 {
		t.Fatalf("deliveries for a deleted webhook: %v", s)
	}
	if n := len(recv.deliveries()); n != 0 {
		t.Fatalf("receiver got %d requests, want 0", n)
	}
}

func TestWebhookInternalAddressesRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: delivers webhooks from background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, nil) // WEBHOOK_ALLOW_PRIVATE=false
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")
	for _, url := range []string{"https://127.0.0.1/hook", "https://10.0.0.1/hook", "https://[::1]/hook",
		"https://169.254.169.254/latest", "https://100.64.0.1/", "https://localhost/hook", "http://example.com/hook"} {
		if res := b.Do(t, whRegister, map[string]any{"input": map[string]any{"url": url}}); !slices.Contains(res.Codes(), "BAD_USER_INPUT") {
			t.Errorf("registering %s: %+v, want BAD_USER_INPUT", url, res.Errors)
		}
	}

	// A webhook whose host resolves to loopback at delivery time (stored directly, as if its DNS
	// had changed since registration) is refused by the dialer: nothing reaches the receiver.
	recv := newReceiver(t)
	if _, err := env.Store.Stores().Webhooks.Create(context.Background(), b.ID, recv.URL, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	asCreateTask(t, a, map[string]any{"title": "T", "assigneeId": b.GlobalID})
	testenv.WaitForState(t, 30*time.Second, "the delivery to be refused", func() (bool, string) {
		s := whJobStates(t, env)
		return slices.Equal(s, []string{"cancelled/1"}), strings.Join(s, ",")
	})
	if n := len(recv.deliveries()); n != 0 {
		t.Fatalf("receiver got %d requests, want 0", n)
	}
	if !strings.Contains(env.Logs.String(), webhook.ErrForbiddenAddress.Error()) {
		t.Fatal("the refusal was not logged")
	}
}
