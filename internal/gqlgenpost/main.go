// Command gqlgenpost rewrites gqlgen's generated executor (graph/generated.go) after
// `gqlgen generate`, for cuts gqlgen's templates offer no option for (issue 13: a page of 20 tasks
// cost ~6,000 allocations, most of them gqlgen's per-field and per-object machinery). Each rewrite
// matches an exact shape of generated code and replaces it with code that answers byte for byte the
// same, calling hand-written helpers in graph/ (rewrites.go). A rewrite that finds nothing to rewrite
// fails the generation, so a gqlgen upgrade that changes the templates cannot drop a cut silently.
// Run from the module root (graph/gen.go does).
package main

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
	"regexp"
)

const generated = "graph/generated.go"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gqlgenpost:", err)
		os.Exit(1)
	}
}

func run() error {
	src, err := os.ReadFile(generated)
	if err != nil {
		return fmt.Errorf("read generated code: %w", err)
	}
	for _, r := range []func([]byte) ([]byte, int){
		lazyDeferredGroups, directFieldValues, directLeafFields, directObjectFields, sharedEnumMarshalers, stringLists,
		plainObjects, sequentialLists,
	} {
		var n int
		if src, n = r(src); n == 0 {
			return fmt.Errorf("a rewrite found nothing to rewrite in %s (did gqlgen's templates change?)", generated)
		}
	}
	table, err := concurrentFieldsTable(src)
	if err != nil {
		return err
	}
	if src, err = format.Source(append(src, table...)); err != nil {
		return fmt.Errorf("format generated code: %w", err)
	}
	if err := os.WriteFile(generated, src, 0o644); err != nil {
		return fmt.Errorf("write generated code: %w", err)
	}
	return nil
}

// lazyDeferredGroups builds an object's @defer group only when its selection defers a field
// (graph/rewrites.go, newDeferredGroup).
func lazyDeferredGroups(src []byte) ([]byte, int) {
	from, to := []byte("\tdeferred := graphql.NewDeferredGroup(ctx)\n"), []byte("\tdeferred := newDeferredGroup(ctx, fields)\n")
	return bytes.ReplaceAll(src, from, to), bytes.Count(src, from)
}

// directFieldValues writes a resolved object through fieldValues (graph/rewrites.go) instead of
// *graphql.FieldSet's MarshalGQL, which allocates per field (an iterator closure and a copy of the
// field) and a map per object. Every generated object ends the same way: the deferred group, then
// `return out`.
func directFieldValues(src []byte) ([]byte, int) {
	re := regexp.MustCompile(`(\t\tec\.ProcessDeferredGroup\(deferred\)\n\t}\n\n)\treturn out\n}\n`)
	n := len(re.FindAll(src, -1))
	return re.ReplaceAll(src, []byte("${1}\treturn &fieldValues{fields: fields, values: out.Values}\n}\n")), n
}

// Generated names contain non-ASCII letters (ᚗ, ᚋ, ᚐ…), which \w does not match: marshal function
// names are matched as [^\s(]+.

// plainField is a generated field function that reads a struct field or a plain method (no
// context, no error, no arguments, no directive) of a pointer or slice type; leafField is one of
// those a directLeafFields rewrite may take.
var plainField = regexp.MustCompile(`func \(ec \*executionContext\) _(\w+)_(\w+)\(ctx context\.Context, field graphql\.CollectedField, obj (\S+)\) \(ret graphql\.Marshaler\) \{
	return graphql\.ResolveField\(
		ctx,
		ec\.OperationContext,
		field,
		func\(ctx context\.Context, field graphql\.CollectedField\) \(\*graphql\.FieldContext, error\) \{
			return ec\.(fieldContext_\w+)\(ctx, field\)
		\},
		func\(ctx context\.Context\) \(any, error\) \{
			return (obj\.\w+(?:\(\))?), nil
		\},
		nil,
		func\(ctx context\.Context, selections ast\.SelectionSet, v ((?:\*|\[\])\S+)\) graphql\.Marshaler \{
			return ec\.([^\s(]+)\(ctx, selections, v\)
		\},
		true,
		(?:true|false),
	\)
\}
`)

// directObjectFields resolves the remaining plain fields (objects and lists: a connection's edges,
// an edge's node) as graphql.ResolveField does, minus its closures and the field middleware
// (none, see directLeafFields): the field's context, a recover that reports a panic and answers
// null, FieldContext.Result, then the marshaler. ResolveField's nil check cannot fire for them: a
// pointer or slice boxed into its `any` is never a nil interface, so it hands nil to the
// marshaler too, which reports it.
func directObjectFields(src []byte) ([]byte, int) {
	n := 0
	out := plainField.ReplaceAllFunc(src, func(fn []byte) []byte {
		m := plainField.FindSubmatch(fn)
		object, field, objType, fieldContext, value, marshal := m[1], m[2], m[3], m[4], m[5], m[7]
		n++
		return fmt.Appendf(nil, `func (ec *executionContext) _%s_%s(ctx context.Context, field graphql.CollectedField, obj %s) (ret graphql.Marshaler) {
	fc, err := ec.%s(ctx, field)
	if err != nil {
		return graphql.Null
	}
	ctx = graphql.WithFieldContext(ctx, fc)
	defer func() {
		if r := recover(); r != nil {
			ec.OperationContext.Error(ctx, ec.OperationContext.Recover(ctx, r))
			ret = graphql.Null
		}
	}()
	res := %s
	fc.Result = res
	return ec.%s(ctx, field.Selections, res)
}
`, object, field, objType, fieldContext, value, marshal)
	})
	return out, n
}

// sharedEnumMarshalers marshals enum values through one shared marshaler per value
// (graph/rewrites.go, enumString) instead of a new one per field.
func sharedEnumMarshalers(src []byte) ([]byte, int) {
	re := regexp.MustCompile(`(\tres := )graphql\.MarshalString\((marshal[^\s(\[]+\[v\])\)\n`)
	n := len(re.FindAll(src, -1))
	return re.ReplaceAll(src, []byte("${1}enumString(${2})\n")), n
}

// stringLists writes a [String!]! list of plain strings as one marshaler (graph/rewrites.go,
// stringList) instead of an array of one marshaler per string.
func stringLists(src []byte) ([]byte, int) {
	re := regexp.MustCompile(`(func \(ec \*executionContext\) marshalNString2ᚕstringᚄ\(ctx context\.Context, sel ast\.SelectionSet, v \[\]string\) graphql\.Marshaler \{\n)\tret := make\(graphql\.Array, len\(v\)\)\n\tfor i := range v \{\n\t\tret\[i\] = ec\.marshalNString2string\(ctx, sel, v\[i\]\)\n\t\}\n\n\tfor _, e := range ret \{\n\t\tif e == graphql\.Null \{\n\t\t\treturn graphql\.Null\n\t\t\}\n\t\}\n\n\treturn ret\n\}\n`)
	n := len(re.FindAll(src, -1))
	return re.ReplaceAll(src, []byte("${1}\treturn stringList(v)\n}\n")), n
}

// plainObjects gives an object type none of whose fields is concurrent (an edge, a PageInfo) one
// allocation for its resolved fields (graph/rewrites.go, plainFields) instead of a FieldSet, its
// values and the fieldValues that writes them: such an object resolves every field inline, so
// nothing of FieldSet but Values and Invalids is used.
func plainObjects(src []byte) ([]byte, int) {
	re := regexp.MustCompile(`(?ms)^func \(ec \*executionContext\) _\w+\(ctx context\.Context, sel ast\.SelectionSet, obj [^\n]*\) graphql\.Marshaler \{\n.*?^}\n`)
	n := 0
	out := re.ReplaceAllFunc(src, func(fn []byte) []byte {
		if bytes.Contains(fn, []byte("Concurrently(")) || bytes.Count(fn, []byte("\tout := graphql.NewFieldSet(fields)\n")) != 1 ||
			bytes.Count(fn, []byte("\treturn &fieldValues{fields: fields, values: out.Values}\n")) != 1 {
			return fn
		}
		n++
		fn = bytes.Replace(fn, []byte("\tout := graphql.NewFieldSet(fields)\n"), []byte("\tout := newPlainFields(fields)\n"), 1)
		return bytes.Replace(fn, []byte("\treturn &fieldValues{fields: fields, values: out.Values}\n"), []byte("\treturn &out.fieldValues\n"), 1)
	})
	return out, n
}

// leafField is a generated field function that reads a struct field or a plain method (no
// context, no error, no arguments, no directive, no middleware of its own) of a scalar or enum type.
var leafField = regexp.MustCompile(`func \(ec \*executionContext\) _(\w+)_(\w+)\(ctx context\.Context, field graphql\.CollectedField, obj (\S+)\) \(ret graphql\.Marshaler\) \{
	return graphql\.ResolveField\(
		ctx,
		ec\.OperationContext,
		field,
		func\(ctx context\.Context, field graphql\.CollectedField\) \(\*graphql\.FieldContext, error\) \{
			return ec\.fieldContext_\w+\(ctx, field\)
		\},
		func\(ctx context\.Context\) \(any, error\) \{
			return (obj\.\w+(?:\(\))?), nil
		\},
		nil,
		func\(ctx context\.Context, selections ast\.SelectionSet, v \S+\) graphql\.Marshaler \{
			return ec\.([^\s(]+)\(ctx, selections, v\)
		\},
		true,
		(?:true|false),
	\)
\}
`)

// Marshal functions whose result is never graphql.Null: a marshaler that calls only these never
// reaches its "must not be null" branch, the one place it reads the field's context.
const neverNull = `(?:graphql\.MarshalString|graphql\.MarshalID|graphql\.MarshalInt|graphql\.MarshalInt32|graphql\.MarshalInt64|graphql\.MarshalBoolean|gqlscalar\.MarshalDateTime)`

// Generated marshalers that cannot fail for any value: a non-null scalar or enum, a nullable one
// (nil is null, no error), or a non-null list of such non-null scalars.
var (
	nonNullScalar  = regexp.MustCompile(`^\t_ = sel\n\tres := ` + neverNull + `\([^()]*(?:\[v\])?\)\n\tif res == graphql\.Null \{\n\t\tgraphql\.AddInvalidNullFromMarshaler\(ctx, "[\w!]+"\)\n\t\}\n\treturn res\n$`)
	nullableScalar = regexp.MustCompile(`^\tif v == nil \{\n\t\treturn graphql\.Null\n\t\}\n\t_ = sel\n\t_ = ctx\n\tres := ` + neverNull + `\((?:\*v|v)\)\n\treturn res\n$`)
	plainScalar    = regexp.MustCompile(`^\t_ = sel\n\t_ = ctx\n\tres := ` + neverNull + `\(v\)\n\treturn res\n$`)
	scalarList     = regexp.MustCompile(`^\tret := make\(graphql\.Array, len\(v\)\)\n\tfor i := range v \{\n\t\tret\[i\] = ec\.([^\s(]+)\(ctx, sel, v\[i\]\)\n\t\}\n\n\tfor _, e := range ret \{\n\t\tif e == graphql\.Null \{\n\t\t\treturn graphql\.Null\n\t\t\}\n\t\}\n\n\treturn ret\n$`)
)

// directLeafFields writes leaf fields straight from the object: no FieldContext, context value,
// closures or boxing per field. What that skips cannot matter for them: reading a field of a
// non-nil object cannot panic, their marshalers never report an error (so nothing needs the
// field's path), leaves have no children to read FieldContext.Result, and Taskgraph registers no
// field middleware (graph/rewrites_test.go fails if one appears). A string field of the row is
// written from the row when the response is written, as the marshaler would have written the value
// it read: rows are read for each operation and never changed once resolved.
func directLeafFields(src []byte) ([]byte, int) {
	bodies := marshalerBodies(src)
	var safe func(name string) bool
	safe = func(name string) bool {
		body, ok := bodies[name]
		if !ok {
			return false
		}
		if nonNullScalar.Match(body) || nullableScalar.Match(body) || plainScalar.Match(body) {
			return true
		}
		m := scalarList.FindSubmatch(body)
		return m != nil && string(m[1]) != name && safe(string(m[1]))
	}
	n := 0
	out := leafField.ReplaceAllFunc(src, func(fn []byte) []byte {
		m := leafField.FindSubmatch(fn)
		object, field, objType, value, marshal := m[1], m[2], m[3], m[4], m[5]
		if !safe(string(marshal)) || !isScalarFieldContext(src, string(object), string(field)) {
			return fn
		}
		n++
		if string(marshal) == "marshalNString2string" && !bytes.HasSuffix(value, []byte("()")) {
			// A string field of the row: written from the row itself, with no marshaler to allocate.
			return fmt.Appendf(nil, "func (ec *executionContext) _%s_%s(ctx context.Context, field graphql.CollectedField, obj %s) (ret graphql.Marshaler) {\n\treturn (*stringField)(&%s)\n}\n",
				object, field, objType, value)
		}
		return fmt.Appendf(nil, "func (ec *executionContext) _%s_%s(ctx context.Context, field graphql.CollectedField, obj %s) (ret graphql.Marshaler) {\n\treturn ec.%s(ctx, field.Selections, %s)\n}\n",
			object, field, objType, marshal, value)
	})
	return out, n
}

// isScalarFieldContext reports whether the field's context is a plain scalar one (no arguments,
// no children).
func isScalarFieldContext(src []byte, object, field string) bool {
	re := regexp.MustCompile(`func \(ec \*executionContext\) fieldContext_` + object + `_` + field + `\([^\n]*\n\treturn graphql\.NewScalarFieldContext\(`)
	return re.Match(src)
}

// marshalerBodies maps each generated marshal function to its body.
func marshalerBodies(src []byte) map[string][]byte {
	re := regexp.MustCompile(`(?ms)^func \(ec \*executionContext\) (marshal[^\s(]+)\(ctx context\.Context, sel ast\.SelectionSet, v [^\n]*\) graphql\.Marshaler \{\n(.*?)^}\n`)
	out := map[string][]byte{}
	for _, m := range re.FindAllSubmatch(src, -1) {
		out[string(m[1])] = m[2]
	}
	return out
}

// sequentialLists lets a list of objects be marshalled on the calling goroutine (graph/rewrites.go,
// marshalSlice) instead of a goroutine per element, when nothing its elements' selection resolves
// can wait on another element (see concurrentFieldsTable); otherwise marshalSlice calls
// graphql.MarshalSliceConcurrently as the generated code did.
func sequentialLists(src []byte) ([]byte, int) {
	re := regexp.MustCompile(`(func \(ec \*executionContext\) marshal[NO](\w+)2ᚕ[^\s(]*\(ctx context\.Context, sel ast\.SelectionSet, v [^\n]*\) graphql\.Marshaler \{\n)\tret := graphql\.MarshalSliceConcurrently\(ctx, len\(v\), 0, false, (func\(ctx context\.Context, i int\) graphql\.Marshaler \{\n\t\tfc := graphql\.GetFieldContext\(ctx\)\n\t\tfc\.Result = (&v\[i\]|v\[i\])\n)`)
	n := len(re.FindAll(src, -1))
	return re.ReplaceAll(src, []byte("${1}\tret := ec.marshalSlice(ctx, sel, \"${2}\", len(v), func(i int) any { return ${4} }, ${3}")), n
}

// concurrentFieldsTable writes, for every generated object, the fields it resolves concurrently (a
// resolver behind a dataloader may wait for other elements' loads: marshalSlice marshals a list
// on one goroutine only if its selection reaches none of these, or the resolver root vouches for
// them). An object whose code schedules concurrent work in any other form fails the generation:
// the table must not miss a field.
func concurrentFieldsTable(src []byte) ([]byte, error) {
	objects := regexp.MustCompile(`(?ms)^func \(ec \*executionContext\) _(\w+)\(ctx context\.Context, sel ast\.SelectionSet(?:, obj [^\n]*)?\) graphql\.Marshaler \{\n.*?^}\n`)
	field := regexp.MustCompile(`\t\tcase "(\w+)":\n\t\t\tout\.ResolveConcurrently\(`)
	var b bytes.Buffer
	b.WriteString("\n// The fields each object's code above resolves concurrently (written by internal/gqlgenpost; see\n// concurrentFields in rewrites.go).\nfunc init() {\n\tconcurrentFields = map[string][]string{\n")
	total := 0
	for _, m := range objects.FindAllSubmatch(src, -1) {
		fn, name := m[0], m[1]
		if bytes.Contains(fn, []byte("ResolveRootConcurrently(")) {
			continue // Query, Mutation, Subscription: never list elements
		}
		fields := field.FindAllSubmatch(fn, -1)
		if len(fields) != bytes.Count(fn, []byte("Concurrently(")) || bytes.Contains(fn, []byte("go func")) {
			return nil, fmt.Errorf("_%s schedules concurrent work in a form gqlgenpost does not know", name)
		}
		if len(fields) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\t\t%q: {", name)
		for i, f := range fields {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", f[1])
		}
		b.WriteString("},\n")
		total++
	}
	b.WriteString("\t}\n}\n")
	if total == 0 {
		return nil, fmt.Errorf("no object resolves a field concurrently in %s (did gqlgen's templates change?)", generated)
	}
	return b.Bytes(), nil
}
