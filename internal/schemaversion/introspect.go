package schemaversion

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/taskgraph/taskgraph/graph"
)

// IntrospectionQuery is graphql-js's getIntrospectionQuery with every option on (descriptions,
// schema description, specifiedByURL, isRepeatable, deprecated arguments and input fields, isOneOf):
// what GraphiQL, codegen and schema registries ask a server.
const IntrospectionQuery = `query IntrospectionQuery {
  __schema {
    description
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description specifiedByURL isOneOf
  fields(includeDeprecated: true) { name description args(includeDeprecated: true) { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue isDeprecated deprecationReason }
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }`

// Introspection is the answer to IntrospectionQuery.
type Introspection struct {
	Schema struct {
		Description      *string        `json:"description"`
		QueryType        *named         `json:"queryType"`
		MutationType     *named         `json:"mutationType"`
		SubscriptionType *named         `json:"subscriptionType"`
		Types            []ispType      `json:"types"`
		Directives       []ispDirective `json:"directives"`
	} `json:"__schema"`
}

type named struct {
	Name string `json:"name"`
}

type ispType struct {
	Kind           string         `json:"kind"`
	Name           string         `json:"name"`
	Description    *string        `json:"description"`
	SpecifiedByURL *string        `json:"specifiedByURL"`
	IsOneOf        bool           `json:"isOneOf"`
	Fields         []ispField     `json:"fields"`
	InputFields    []ispInput     `json:"inputFields"`
	Interfaces     []ispTypeRef   `json:"interfaces"`
	EnumValues     []ispEnumValue `json:"enumValues"`
	PossibleTypes  []ispTypeRef   `json:"possibleTypes"`
}

type ispField struct {
	Name              string     `json:"name"`
	Description       *string    `json:"description"`
	Args              []ispInput `json:"args"`
	Type              ispTypeRef `json:"type"`
	IsDeprecated      bool       `json:"isDeprecated"`
	DeprecationReason *string    `json:"deprecationReason"`
}

type ispInput struct {
	Name              string     `json:"name"`
	Description       *string    `json:"description"`
	Type              ispTypeRef `json:"type"`
	DefaultValue      *string    `json:"defaultValue"`
	IsDeprecated      bool       `json:"isDeprecated"`
	DeprecationReason *string    `json:"deprecationReason"`
}

type ispEnumValue struct {
	Name              string  `json:"name"`
	Description       *string `json:"description"`
	IsDeprecated      bool    `json:"isDeprecated"`
	DeprecationReason *string `json:"deprecationReason"`
}

type ispTypeRef struct {
	Kind   string      `json:"kind"`
	Name   *string     `json:"name"`
	OfType *ispTypeRef `json:"ofType"`
}

type ispDirective struct {
	Name         string     `json:"name"`
	Description  *string    `json:"description"`
	IsRepeatable bool       `json:"isRepeatable"`
	Locations    []string   `json:"locations"`
	Args         []ispInput `json:"args"`
}

// Introspect runs IntrospectionQuery through gqlgen's executor against es, exactly as the server
// answers it, and returns the raw JSON of its data.
func Introspect(es graphql.ExecutableSchema) (json.RawMessage, error) {
	exec := executor.New(es)
	exec.Use(extension.Introspection{})
	ctx := graphql.StartOperationTrace(context.Background())
	rc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: IntrospectionQuery})
	if errs != nil {
		return nil, fmt.Errorf("introspection query: %v", errs)
	}
	responses, ctx := exec.DispatchOperation(ctx, rc)
	resp := responses(ctx)
	if resp == nil || len(resp.Errors) > 0 {
		return nil, fmt.Errorf("introspection: %v", resp)
	}
	return json.RawMessage(resp.Data), nil
}

// IntrospectSDL introspects the schema of an SDL document (a released snapshot), as a server built
// from it would answer.
func IntrospectSDL(name, sdl string) (json.RawMessage, error) {
	s, err := gqlparser.LoadSchema(&ast.Source{Name: name, Input: sdl})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return Introspect(graph.NewExecutableSchema(graph.Config{Schema: s}))
}

// specifiedDirectives are the directives of the GraphQL specification, which SDL printers leave
// out (graphql-js's printSchema does too). @defer is not among them yet, so it is printed.
var specifiedDirectives = map[string]bool{"include": true, "skip": true, "deprecated": true, "specifiedBy": true, "oneOf": true}

// specifiedScalars are the built-in scalars.
var specifiedScalars = map[string]bool{"String": true, "Int": true, "Float": true, "Boolean": true, "ID": true}

// PrintIntrospection renders an introspection answer (the JSON of its data) as SDL: the schema
// description and root types, the directives other than the specification's, then every type but
// the built-in scalars and the introspection types, in the answer's order (gqlgen sorts types and
// directives by name; fields, arguments and values keep their source order). Descriptions are
// block strings; deprecations and @specifiedBy and @oneOf, the only directive uses introspection
// shows, are printed on what they apply to.
func PrintIntrospection(data json.RawMessage) (string, error) {
	var in Introspection
	if err := json.Unmarshal(data, &in); err != nil {
		return "", fmt.Errorf("introspection answer: %w", err)
	}
	s := in.Schema
	var blocks []string
	var b strings.Builder
	desc(&b, s.Description, "")
	b.WriteString("schema {\n")
	for _, root := range []struct {
		op string
		t  *named
	}{{"query", s.QueryType}, {"mutation", s.MutationType}, {"subscription", s.SubscriptionType}} {
		if root.t != nil {
			fmt.Fprintf(&b, "  %s: %s\n", root.op, root.t.Name)
		}
	}
	b.WriteString("}")
	blocks = append(blocks, b.String())

	for _, d := range s.Directives {
		if specifiedDirectives[d.Name] {
			continue
		}
		b.Reset()
		desc(&b, d.Description, "")
		b.WriteString("directive @" + d.Name)
		args(&b, d.Args, "")
		if d.IsRepeatable {
			b.WriteString(" repeatable")
		}
		b.WriteString(" on " + strings.Join(d.Locations, " | "))
		blocks = append(blocks, b.String())
	}

	for _, t := range s.Types {
		if strings.HasPrefix(t.Name, "__") || (t.Kind == "SCALAR" && specifiedScalars[t.Name]) {
			continue
		}
		b.Reset()
		desc(&b, t.Description, "")
		switch t.Kind {
		case "SCALAR":
			b.WriteString("scalar " + t.Name)
			if t.SpecifiedByURL != nil {
				b.WriteString(" @specifiedBy(url: " + quote(*t.SpecifiedByURL) + ")")
			}
		case "OBJECT", "INTERFACE":
			b.WriteString(map[string]string{"OBJECT": "type ", "INTERFACE": "interface "}[t.Kind] + t.Name)
			if len(t.Interfaces) > 0 {
				names := make([]string, len(t.Interfaces))
				for i, ref := range t.Interfaces {
					names[i] = typeRef(ref)
				}
				b.WriteString(" implements " + strings.Join(names, " & "))
			}
			b.WriteString(" {\n")
			for i, f := range t.Fields {
				desc(&b, f.Description, "  ", i == 0)
				b.WriteString("  " + f.Name)
				args(&b, f.Args, "  ")
				b.WriteString(": " + typeRef(f.Type))
				deprecated(&b, f.IsDeprecated, f.DeprecationReason)
				b.WriteString("\n")
			}
			b.WriteString("}")
		case "UNION":
			names := make([]string, len(t.PossibleTypes))
			for i, ref := range t.PossibleTypes {
				names[i] = typeRef(ref)
			}
			b.WriteString("union " + t.Name + " = " + strings.Join(names, " | "))
		case "ENUM":
			b.WriteString("enum " + t.Name + " {\n")
			for i, v := range t.EnumValues {
				desc(&b, v.Description, "  ", i == 0)
				b.WriteString("  " + v.Name)
				deprecated(&b, v.IsDeprecated, v.DeprecationReason)
				b.WriteString("\n")
			}
			b.WriteString("}")
		case "INPUT_OBJECT":
			b.WriteString("input " + t.Name)
			if t.IsOneOf {
				b.WriteString(" @oneOf")
			}
			b.WriteString(" {\n")
			for i, f := range t.InputFields {
				desc(&b, f.Description, "  ", i == 0)
				b.WriteString("  ")
				inputValue(&b, f)
				b.WriteString("\n")
			}
			b.WriteString("}")
		default:
			return "", fmt.Errorf("type %s: unknown kind %q", t.Name, t.Kind)
		}
		blocks = append(blocks, b.String())
	}
	return strings.Join(blocks, "\n\n") + "\n", nil
}

// desc writes a description as a block string on its own lines, indented; a blank line sets it off
// from the member before it unless it is the first of its block.
func desc(b *strings.Builder, d *string, indent string, first ...bool) {
	if d == nil || *d == "" {
		return
	}
	if indent != "" && len(first) > 0 && !first[0] {
		b.WriteString("\n")
	}
	b.WriteString(indent + `"""` + "\n")
	for line := range strings.SplitSeq(strings.ReplaceAll(*d, `"""`, `\"""`), "\n") {
		if line == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString(indent + line + "\n")
	}
	b.WriteString(indent + `"""` + "\n")
}

// args writes an argument list: on one line when no argument has a description, else one per line.
func args(b *strings.Builder, in []ispInput, indent string) {
	if len(in) == 0 {
		return
	}
	if !slices.ContainsFunc(in, func(a ispInput) bool { return a.Description != nil && *a.Description != "" }) {
		b.WriteString("(")
		for i, a := range in {
			if i > 0 {
				b.WriteString(", ")
			}
			inputValue(b, a)
		}
		b.WriteString(")")
		return
	}
	b.WriteString("(\n")
	for i, a := range in {
		desc(b, a.Description, indent+"  ", i == 0)
		b.WriteString(indent + "  ")
		inputValue(b, a)
		b.WriteString("\n")
	}
	b.WriteString(indent + ")")
}

func inputValue(b *strings.Builder, v ispInput) {
	b.WriteString(v.Name + ": " + typeRef(v.Type))
	if v.DefaultValue != nil {
		b.WriteString(" = " + *v.DefaultValue)
	}
	deprecated(b, v.IsDeprecated, v.DeprecationReason)
}

func deprecated(b *strings.Builder, is bool, reason *string) {
	if !is {
		return
	}
	if reason == nil {
		b.WriteString(" @deprecated")
		return
	}
	b.WriteString(" @deprecated(reason: " + quote(*reason) + ")")
}

func typeRef(t ispTypeRef) string {
	switch t.Kind {
	case "NON_NULL":
		if t.OfType != nil {
			return typeRef(*t.OfType) + "!"
		}
	case "LIST":
		if t.OfType != nil {
			return "[" + typeRef(*t.OfType) + "]"
		}
	}
	if t.Name == nil {
		return "?"
	}
	return *t.Name
}

// quote writes s as a GraphQL string literal (JSON's escapes are GraphQL's).
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}
