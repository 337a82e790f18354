package server

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/tidwall/gjson"
)

// decodeParams is decodeJSON(body, p) for a POST body that json.Valid accepted. The usual shape (an
// object of query, operationName, variables and extensions) is read without reflection: decoding
// it with encoding/json was 5% of the server's CPU on a task by id. Anything else (another key, a
// value of another type) is left to decodeJSON, so the two answer alike by construction; the
// fuzz test compares them on what the fast path accepts.
func decodeParams(body []byte, p *graphql.RawParams) error {
	if fastParams(body, p) {
		return nil
	}
	*p = graphql.RawParams{}
	return decodeJSON(body, p)
}

// fastParams decodes body into p as encoding/json would (UseNumber, later keys win, null leaves a
// string alone and empties a map), or reports false for anything outside the usual shape.
func fastParams(body []byte, p *graphql.RawParams) bool {
	if !utf8.Valid(body) {
		return false // encoding/json replaces invalid bytes (guardGraphQL refuses such bodies anyway)
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return false
	}
	ok := true
	root.ForEach(func(k, v gjson.Result) bool {
		name, good := jsonString(k)
		if !good {
			ok = false
			return false
		}
		switch {
		case strings.EqualFold(name, "query"):
			ok = setString(&p.Query, v)
		case strings.EqualFold(name, "operationName"):
			ok = setString(&p.OperationName, v)
		case strings.EqualFold(name, "variables"):
			ok = setObject(&p.Variables, v)
		case strings.EqualFold(name, "extensions"):
			ok = setObject(&p.Extensions, v)
		default:
			ok = false // encoding/json's own matching (Unicode case folding) decides
		}
		return ok
	})
	return ok
}

func setString(dst *string, v gjson.Result) bool {
	switch v.Type {
	case gjson.Null:
		return true
	case gjson.String:
		s, ok := jsonString(v)
		*dst = s
		return ok
	}
	return false
}

func setObject(dst *map[string]any, v gjson.Result) bool {
	if v.Type == gjson.Null {
		*dst = nil
		return true
	}
	if !v.IsObject() {
		return false
	}
	if *dst == nil {
		*dst = map[string]any{}
	}
	return addMembers(*dst, v)
}

// addMembers stores the members of object v in m (a repeated key: the last one).
func addMembers(m map[string]any, v gjson.Result) bool {
	ok := true
	v.ForEach(func(k, val gjson.Result) bool {
		key, good := jsonString(k)
		var x any
		if good {
			x, good = jsonValue(val)
		}
		if !good {
			ok = false
			return false
		}
		m[key] = x
		return true
	})
	return ok
}

// jsonValue is v as encoding/json decodes it into an any with UseNumber.
func jsonValue(v gjson.Result) (any, bool) {
	switch v.Type {
	case gjson.Null:
		return nil, true
	case gjson.False:
		return false, true
	case gjson.True:
		return true, true
	case gjson.Number:
		return json.Number(v.Raw), true
	case gjson.String:
		return jsonString(v)
	}
	switch {
	case v.IsObject():
		m := map[string]any{}
		return m, addMembers(m, v)
	case v.IsArray():
		out := []any{}
		ok := true
		v.ForEach(func(_, el gjson.Result) bool {
			x, good := jsonValue(el)
			out = append(out, x)
			ok = good
			return good
		})
		return out, ok
	}
	return nil, false
}

// jsonString is the string v holds; escapes are read by encoding/json itself (its handling of
// invalid surrogates is the reference).
func jsonString(v gjson.Result) (string, bool) {
	if v.Type != gjson.String {
		return "", false
	}
	if strings.IndexByte(v.Raw, '\\') < 0 {
		return v.Str, true
	}
	var s string
	return s, json.Unmarshal([]byte(v.Raw), &s) == nil
}
