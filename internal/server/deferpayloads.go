package server

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/vektah/gqlparser/v2/ast"
)

// deferredPayloads makes gqlgen's @defer results what incremental delivery promises: the initial
// payload carries no field of a deferred fragment, and each deferred fragment's fields arrive
// together in a later payload. gqlgen defers only the fields it resolves concurrently and leaves
// null in their place in the initial payload (so Apollo Client reports the data complete, with
// null for non-null fields), while it sends the other fields of a deferred fragment at once. The
// initial payload is stripped of every deferred field here; the stripped values join the later
// payload for their object, and those no later payload carries (a fragment of fields gqlgen does
// not defer) are sent as payloads of their own before the stream ends.
//
// It only acts on queries whose answer can take later payloads: deferDelivery has already dropped
// @defer from the others. Fragments deferred inside a deferred fragment keep gqlgen's behaviour.
type deferredPayloads struct {
	schema *ast.Schema
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.ResponseInterceptor
} = (*deferredPayloads)(nil)

func (*deferredPayloads) ExtensionName() string { return "DeferredPayloads" }

func (d *deferredPayloads) Validate(es graphql.ExecutableSchema) error {
	d.schema = es.Schema()
	return nil
}

type deferStateKey struct{}

// deferState is one operation's stripped fields, in the order they were stripped.
type deferState struct {
	mu      sync.Mutex
	started bool
	held    []heldField
}

type heldField struct {
	path  ast.Path
	key   string
	value json.RawMessage
	label string
}

func (d *deferredPayloads) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Query || oc.Doc == nil || !hasDefer(oc.Doc) {
		return next(ctx)
	}
	return next(context.WithValue(ctx, deferStateKey{}, &deferState{}))
}

func (d *deferredPayloads) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	st, ok := ctx.Value(deferStateKey{}).(*deferState)
	if !ok {
		return next(ctx)
	}
	resp := next(ctx)
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case !st.started:
		st.started = true
		if resp == nil || resp.Path != nil || !gjson.ValidBytes(resp.Data) {
			return resp
		}
		oc := graphql.GetOperationContext(ctx)
		root := d.schema.Query
		resp.Data = d.strip(oc, st, resp.Data, gjson.ParseBytes(resp.Data), oc.Operation.SelectionSet, root, nil)
	case resp == nil:
		// gqlgen is done: the fields no later payload carried go out now, one object at a time.
		resp = st.nextHeld()
	default:
		resp.Data = st.fill(resp.Path, resp.Data)
	}
	if resp != nil && len(st.held) > 0 {
		more := true
		resp.HasNext = &more
	}
	return resp
}

// strip removes the deferred fields of the object or list v (at path, of GraphQL type typ, selected
// by set) from data, holding them in st, and returns the new data.
func (d *deferredPayloads) strip(oc *graphql.OperationContext, st *deferState, data []byte, v gjson.Result, set ast.SelectionSet,
	typ *ast.Definition, path ast.Path) []byte {
	switch {
	case v.IsArray():
		for i, el := range v.Array() {
			data = d.strip(oc, st, data, el, set, typ, append(path[:len(path):len(path)], ast.PathIndex(i)))
		}
		return data
	case !v.IsObject() || typ == nil:
		return data
	}
	for _, f := range graphql.CollectFields(oc, set, d.satisfies(typ, v)) {
		key := f.Alias
		if key == "" {
			key = f.Name
		}
		fv := v.Get(gjsonKey(key))
		if !fv.Exists() {
			continue
		}
		at := append(path[:len(path):len(path)], ast.PathName(key))
		if f.IsDeferred() {
			label := f.Deferrables[len(f.Deferrables)-1].Label
			st.held = append(st.held, heldField{path: path, key: key, value: json.RawMessage(fv.Raw), label: label})
			if out, err := sjson.DeleteBytes(data, sjsonPath(at)); err == nil {
				data = out
			}
			continue
		}
		if len(f.Selections) > 0 && f.Definition != nil {
			data = d.strip(oc, st, data, fv, f.Selections, d.schema.Types[f.Definition.Type.Name()], at)
		}
	}
	return data
}

// satisfies names the types whose fragments apply to an object of typ: the concrete type (from
// __typename for an interface or union) with its interfaces and unions; nil, "every fragment",
// when the concrete type is unknown, which keeps a field that any fragment selects undeferred.
func (d *deferredPayloads) satisfies(typ *ast.Definition, v gjson.Result) []string {
	if typ.IsAbstractType() {
		name := v.Get("__typename").String()
		if typ = d.schema.Types[name]; typ == nil {
			return nil
		}
	}
	out := []string{typ.Name}
	for _, t := range d.schema.GetImplements(typ) {
		out = append(out, t.Name)
	}
	return out
}

// fill adds to a later payload's object the held fields of the same object it does not carry.
func (st *deferState) fill(path ast.Path, data []byte) []byte {
	nulled := strings.TrimSpace(string(data)) == "null"
	kept := st.held[:0]
	for _, h := range st.held {
		if !samePath(h.path, path) {
			kept = append(kept, h)
			continue
		}
		// gqlgen's value (the field it resolved concurrently) wins over the held placeholder; a
		// fragment that failed as a whole (null) takes its fields with it.
		if !nulled && !gjson.GetBytes(data, gjsonKey(h.key)).Exists() {
			if out, err := sjson.SetRawBytes(data, sjsonPath(ast.Path{ast.PathName(h.key)}), h.value); err == nil {
				data = out
			}
		}
	}
	st.held = kept
	return data
}

// nextHeld takes the held fields of one object off the list as a payload of their own.
func (st *deferState) nextHeld() *graphql.Response {
	if len(st.held) == 0 {
		return nil
	}
	first := st.held[0]
	data := []byte("{}")
	kept := st.held[:0]
	for _, h := range st.held {
		if samePath(h.path, first.path) {
			if out, err := sjson.SetRawBytes(data, sjsonPath(ast.Path{ast.PathName(h.key)}), h.value); err == nil {
				data = out
			}
			continue
		}
		kept = append(kept, h)
	}
	st.held = kept
	done := false
	return &graphql.Response{Data: data, Path: first.path, Label: first.label, HasNext: &done}
}

func samePath(a, b ast.Path) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sjsonPath and gjsonKey address response keys, which are GraphQL names (no characters those path
// syntaxes treat specially), and list indices.
func sjsonPath(p ast.Path) string {
	parts := make([]string, len(p))
	for i, el := range p {
		switch el := el.(type) {
		case ast.PathName:
			parts[i] = string(el)
		case ast.PathIndex:
			parts[i] = strconv.Itoa(int(el))
		}
	}
	return strings.Join(parts, ".")
}

func gjsonKey(key string) string { return key }
