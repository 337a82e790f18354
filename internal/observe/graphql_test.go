package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// gqlServer serves es with the extension of m (and any extra extensions) behind a middleware that
// installs a RequestLog, as the access log will. The last request's log is kept in *last.
func gqlServer(m *Metrics, es graphql.ExecutableSchema, viewer uuid.UUID, last **RequestLog, extra ...graphql.HandlerExtension) http.Handler {
	srv := handler.New(es)
	srv.AddTransport(transport.POST{})
	srv.Use(m.GraphQLExtension())
	for _, e := range extra {
		srv.Use(e)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, l := WithRequestLog(r.Context())
		if viewer != uuid.Nil {
			ctx = auth.WithActor(ctx, policy.Actor{UserID: viewer, Role: policy.Role("USER"), SessionID: uuid.New()})
		}
		*last = l
		srv.ServeHTTP(w, r.WithContext(ctx))
	})
}

// post sends one GraphQL request and returns the decoded response.
func post(t *testing.T, h http.Handler, query string, headers map[string]string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": map[string]any{"password": "hunter2"}})
	req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response %q: %v", rec.Body.String(), err)
	}
	return out
}

// projectSchema is Taskgraph's real executable schema with no resolvers or directives: enough for
// __typename, validation errors and (unimplemented-directive) execution errors.
func projectSchema() graphql.ExecutableSchema {
	return graph.NewExecutableSchema(graph.Config{})
}

func TestOperationDurationByNameAndType(t *testing.T) {
	m, reg := newTestMetrics(t)
	var last *RequestLog
	h := gqlServer(m, projectSchema(), uuid.Nil, &last)

	post(t, h, `query ListTasks { __typename }`, nil)
	if name, typ := last.Operation(); name != "ListTasks" || typ != "query" {
		t.Errorf("log operation %q %q", name, typ)
	}
	post(t, h, `{ __typename }`, nil)
	if name, _ := last.Operation(); name != "anonymous" {
		t.Errorf("log operation of an unnamed query %q", name)
	}
	post(t, h, `query { __typename }`, nil)
	post(t, h, `mutation Bump { __typename }`, nil)

	for _, c := range []struct {
		op, typ string
		want    float64
	}{
		{"ListTasks", "query", 1},
		{"anonymous", "query", 2},
		{"Bump", "mutation", 1},
	} {
		if v := mustValue(t, reg, "taskgraph_graphql_operation_duration_seconds", map[string]string{"operation": c.op, "type": c.typ}); v != c.want {
			t.Errorf("%s %s: %v observations, want %v", c.op, c.typ, v, c.want)
		}
	}
	if len(series(t, reg, "taskgraph_graphql_errors_total")) != 0 {
		t.Error("successful operations counted errors")
	}
}

func TestOperationNamesBounded(t *testing.T) {
	m, reg := newTestMetrics(t)
	var last *RequestLog
	h := gqlServer(m, projectSchema(), uuid.Nil, &last)

	for i := range maxOperationNames {
		post(t, h, fmt.Sprintf(`query Op%d { __typename }`, i), nil)
	}
	post(t, h, `{ __typename }`, nil) // anonymous takes no slot
	post(t, h, `query Op200 { __typename }`, nil)
	post(t, h, `query Op201 { __typename }`, nil)
	post(t, h, `query Op0 { __typename }`, nil) // admitted before the bound: keeps its name

	if name, _ := last.Operation(); name != "Op0" {
		t.Errorf("log operation %q", name)
	}
	names := map[string]float64{}
	for _, s := range series(t, reg, "taskgraph_graphql_operation_duration_seconds") {
		names[s.labels["operation"]] += s.value
	}
	if len(names) != maxOperationNames+2 {
		t.Errorf("%d distinct operation labels, want %d names + anonymous + other", len(names), maxOperationNames)
	}
	if names["other"] != 2 || names["anonymous"] != 1 || names["Op0"] != 2 || names["Op199"] != 1 {
		t.Errorf("other=%v anonymous=%v Op0=%v Op199=%v", names["other"], names["anonymous"], names["Op0"], names["Op199"])
	}
	if _, ok := names["Op200"]; ok {
		t.Error("the 201st distinct name got its own label")
	}
}

func TestOperationNameSanitized(t *testing.T) {
	long := strings.Repeat("A", 100)
	if got := operationName(&ast.OperationDefinition{Name: long}); got != strings.Repeat("A", 64) {
		t.Errorf("long name became %q", got)
	}
	if got := operationName(&ast.OperationDefinition{}); got != "anonymous" {
		t.Errorf("unnamed became %q", got)
	}
}

func TestErrorCodesCounted(t *testing.T) {
	m, reg := newTestMetrics(t)
	var last *RequestLog
	h := gqlServer(m, projectSchema(), uuid.Nil, &last)

	// Validation fails before execution: gqlgen's code, seen once.
	post(t, h, `query Broken { noSuchField }`, nil)
	if codes := last.ErrorCodes(); !slices.Equal(codes, []string{"GRAPHQL_VALIDATION_FAILED"}) {
		t.Errorf("log codes %v", codes)
	}
	// Executed: "me" has @auth, whose implementation is missing here; the error has no code.
	out := post(t, h, `query Me { me { id } }`, nil)
	if errs, _ := out["errors"].([]any); len(errs) != 1 {
		t.Fatalf("want one error, got %v", out)
	}
	if codes := last.ErrorCodes(); !slices.Equal(codes, []string{"INTERNAL"}) {
		t.Errorf("log codes %v", codes)
	}
	if name, typ := last.Operation(); name != "Me" || typ != "query" {
		t.Errorf("log operation %q %q", name, typ)
	}

	for code, want := range map[string]float64{"GRAPHQL_VALIDATION_FAILED": 1, "INTERNAL": 1} {
		if v := mustValue(t, reg, "taskgraph_graphql_errors_total", map[string]string{"code": code}); v != want {
			t.Errorf("code %s counted %v times, want %v", code, v, want)
		}
	}
}

// refuse rejects every operation after validation, as the cost budget does.
type refuse struct{}

func (refuse) ExtensionName() string                   { return "Refuse" }
func (refuse) Validate(graphql.ExecutableSchema) error { return nil }
func (refuse) MutateOperationContext(context.Context, *graphql.OperationContext) *gqlerror.Error {
	return &gqlerror.Error{Message: "budget spent", Extensions: map[string]any{"code": "RATE_LIMITED"}}
}

func TestRefusedOperationLoggedAndCountedOnce(t *testing.T) {
	m, reg := newTestMetrics(t)
	var last *RequestLog
	user := uuid.New()
	h := gqlServer(m, projectSchema(), user, &last, refuse{})

	post(t, h, `query Expensive { __typename }`, nil)
	if name, typ := last.Operation(); name != "Expensive" || typ != "query" {
		t.Errorf("log operation %q %q", name, typ)
	}
	if last.UserID() != user {
		t.Errorf("log user %v, want %v", last.UserID(), user)
	}
	if v := mustValue(t, reg, "taskgraph_graphql_errors_total", map[string]string{"code": "RATE_LIMITED"}); v != 1 {
		t.Errorf("RATE_LIMITED counted %v times", v)
	}
	if len(series(t, reg, "taskgraph_graphql_operation_duration_seconds")) != 0 {
		t.Error("a refused operation was timed as executed")
	}
}

func TestViewerMarkedActiveAndLogged(t *testing.T) {
	m, reg := newTestMetrics(t)
	var last *RequestLog
	user := uuid.New()
	h := gqlServer(m, projectSchema(), user, &last)
	post(t, h, `query A { __typename }`, nil)
	post(t, h, `query B { __typename }`, nil)
	if v := mustValue(t, reg, "taskgraph_active_users", nil); v != 1 {
		t.Errorf("active users %v, want 1", v)
	}

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).LogAttrs(context.Background(), slog.LevelInfo, "request", last.Attrs()...)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["operation"] != "B" || line["operation_type"] != "query" || line["user_id"] != user.String() {
		t.Errorf("log line %s", buf.String())
	}
	if _, ok := line["error_codes"]; ok {
		t.Errorf("log line of a clean request has error_codes: %s", buf.String())
	}
	if strings.Contains(buf.String(), "hunter2") || strings.Contains(buf.String(), "__typename") {
		t.Errorf("log line leaks variables or the query: %s", buf.String())
	}
}

func TestRequestLogAttrs(t *testing.T) {
	ctx, l := WithRequestLog(context.Background())
	if ctx2, l2 := WithRequestLog(ctx); l2 != l || ctx2 != ctx {
		t.Error("WithRequestLog on a context that has one made another")
	}
	if RequestLogFrom(ctx) != l {
		t.Error("RequestLogFrom lost the log")
	}
	if len(l.Attrs()) != 0 {
		t.Errorf("empty log has attributes %v", l.Attrs())
	}
	l.SetOperation("Op", "mutation")
	for range 3 {
		l.AddErrorCode("NOT_FOUND")
	}
	for i := range 30 {
		l.AddErrorCode(fmt.Sprintf("C%d", i))
	}
	codes := l.ErrorCodes()
	if len(codes) != maxLoggedErrorCodes || codes[0] != "NOT_FOUND" || codes[1] != "C0" {
		t.Errorf("codes %v", codes)
	}
	keys := []string{}
	for _, a := range l.Attrs() {
		keys = append(keys, a.Key)
	}
	if !slices.Equal(keys, []string{"operation", "operation_type", "error_codes"}) {
		t.Errorf("attribute keys %v", keys)
	}
}

// deprecatedSchema is a tiny executable schema with a deprecated field; its executor resolves the
// operation's root fields through the operation's field middleware, as generated code does.
func deprecatedSchema() graphql.ExecutableSchema {
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query {
			title: String
			name: String @deprecated(reason: "use title")
		}
	`})
	return &graphql.ExecutableSchemaMock{
		SchemaFunc: func() *ast.Schema { return schema },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) {
			return 1, true
		},
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			opCtx := graphql.GetOperationContext(ctx)
			return graphql.OneShot(func() *graphql.Response {
				data := map[string]any{}
				for _, f := range graphql.CollectFields(opCtx, opCtx.Operation.SelectionSet, []string{"Query"}) {
					fctx := graphql.WithFieldContext(ctx, &graphql.FieldContext{Object: "Query", Field: f})
					v, _ := opCtx.ResolverMiddleware(fctx, func(context.Context) (any, error) { return "x", nil })
					data[f.Alias] = v
				}
				b, _ := json.Marshal(data)
				return &graphql.Response{Data: b}
			}())
		},
	}
}

func TestDeprecatedFieldUsage(t *testing.T) {
	m, reg := newTestMetrics(t)
	var last *RequestLog
	h := gqlServer(m, deprecatedSchema(), uuid.Nil, &last)

	web := map[string]string{"apollographql-client-name": "web-app", "apollographql-client-version": "1.4.2"}
	out := post(t, h, `query Q { title name again: name }`, web)
	if data, _ := out["data"].(map[string]any); data["name"] != "x" || data["title"] != "x" {
		t.Fatalf("response %v", out)
	}
	post(t, h, `{ title }`, web)
	post(t, h, `{ name }`, nil)

	if v := mustValue(t, reg, "taskgraph_graphql_deprecated_field_usage_total",
		map[string]string{"field": "Query.name", "client_name": "web-app", "client_version": "1.4.2"}); v != 2 {
		t.Errorf("web-app 1.4.2 used Query.name %v times, want 2", v)
	}
	if v := mustValue(t, reg, "taskgraph_graphql_deprecated_field_usage_total",
		map[string]string{"field": "Query.name", "client_name": "unknown", "client_version": "unknown"}); v != 1 {
		t.Errorf("unknown client used Query.name %v times, want 1", v)
	}
	for _, s := range series(t, reg, "taskgraph_graphql_deprecated_field_usage_total") {
		if s.labels["field"] != "Query.name" {
			t.Errorf("non-deprecated field counted: %v", s.labels)
		}
	}
}

func TestClientPairsBounded(t *testing.T) {
	m, reg := newTestMetrics(t)
	var last *RequestLog
	h := gqlServer(m, deprecatedSchema(), uuid.Nil, &last)
	for i := range maxClientPairs + 5 {
		post(t, h, `{ name }`, map[string]string{
			"apollographql-client-name":    "app",
			"apollographql-client-version": fmt.Sprintf("1.0.%d", i),
		})
	}
	post(t, h, `{ name }`, map[string]string{"apollographql-client-name": "évil\"}{", "apollographql-client-version": "1.0.0"})

	all := series(t, reg, "taskgraph_graphql_deprecated_field_usage_total")
	if len(all) != maxClientPairs+1 {
		t.Errorf("%d series, want %d pairs + other", len(all), maxClientPairs)
	}
	if v := mustValue(t, reg, "taskgraph_graphql_deprecated_field_usage_total",
		map[string]string{"client_name": "other", "client_version": "other"}); v != 6 {
		t.Errorf("other counted %v, want 6", v)
	}
}

func TestIsDeprecated(t *testing.T) {
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `type Query { a: Int b: Int @deprecated }`})
	q := schema.Types["Query"]
	if isDeprecated(q.Fields.ForName("a")) || !isDeprecated(q.Fields.ForName("b")) || isDeprecated(nil) {
		t.Error("isDeprecated is wrong")
	}
}
