package server

import (
	"context"
	"fmt"
	"reflect"
	"slices"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/internal/validate"
)

// strictVariables refuses variable values that gqlparser's variable validation lets through although
// the GraphQL spec does not:
//
//   - an enum value in another case: gqlparser compares names case-insensitively, and gqlgen's generated
//     unmarshalers then map the unknown name to the zero value without an error, so "urgent" became a
//     LOW priority and a status filter of ["done"] silently matched nothing;
//   - a JSON number where a String is expected (the decoder keeps numbers as json.Number, whose kind is
//     string), which gqlgen turns into text: {"title": 5} created a task titled "5";
//   - a list longer than validate.MaxListLen or a string longer than validate.MaxStringBytes: refused
//     whole before any resolver works on their elements (40,000 tags cost seconds of de-duplication
//     and a 100,000-element list of bad tags a 19 MB answer).
//
// It runs after gqlgen's own variable validation, so values already have the right shape otherwise.
type strictVariables struct {
	schema *ast.Schema
}

var (
	_ graphql.HandlerExtension        = (*strictVariables)(nil)
	_ graphql.OperationContextMutator = (*strictVariables)(nil)
)

func (*strictVariables) ExtensionName() string { return "StrictVariables" }

func (s *strictVariables) Validate(es graphql.ExecutableSchema) error {
	s.schema = es.Schema()
	return nil
}

func (s *strictVariables) MutateOperationContext(_ context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	if opCtx.Operation == nil || s.schema == nil {
		return nil
	}
	for _, def := range opCtx.Operation.VariableDefinitions {
		v, ok := opCtx.Variables[def.Variable]
		if !ok {
			continue
		}
		path := ast.Path{ast.PathName("variable"), ast.PathName(def.Variable)}
		if msg, at := s.check(def.Type, v, path); msg != "" {
			err := gqlerror.ErrorPathf(at, "%s", msg)
			errcode.Set(err, errcode.ValidationFailed)
			return err
		}
	}
	return nil
}

// check returns why v is not a value of typ, and where, or "".
func (s *strictVariables) check(typ *ast.Type, v any, path ast.Path) (string, ast.Path) {
	if v == nil || typ == nil {
		return "", nil
	}
	if str, ok := v.(string); ok && len(str) > validate.MaxStringBytes {
		return fmt.Sprintf("a string may hold at most %d bytes", validate.MaxStringBytes), path
	}
	if typ.Elem != nil {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice {
			return s.check(typ.Elem, v, path) // a single value stands for a list of one
		}
		if rv.Len() > validate.MaxListLen {
			return fmt.Sprintf("a list may hold at most %d values, got %d", validate.MaxListLen, rv.Len()), path
		}
		for i := range rv.Len() {
			if msg, at := s.check(typ.Elem, rv.Index(i).Interface(), append(slices.Clip(path), ast.PathIndex(i))); msg != "" {
				return msg, at
			}
		}
		return "", nil
	}
	def := s.schema.Types[typ.NamedType]
	if def == nil {
		return "", nil
	}
	switch def.Kind {
	case ast.Enum:
		if name, ok := v.(string); !ok || def.EnumValues.ForName(name) == nil {
			return fmt.Sprintf("is not a %s value (enum values are case-sensitive)", def.Name), path
		}
	case ast.Scalar:
		if def.Name == "String" {
			if _, ok := v.(string); !ok {
				return "a String must be a JSON string", path
			}
		}
	case ast.InputObject:
		fields, ok := v.(map[string]any)
		if !ok {
			return "", nil
		}
		for _, f := range def.Fields {
			if fv, ok := fields[f.Name]; ok {
				if msg, at := s.check(f.Type, fv, append(slices.Clip(path), ast.PathName(f.Name))); msg != "" {
					return msg, at
				}
			}
		}
	}
	return "", nil
}
