package server

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"

	"github.com/99designs/gqlgen/graphql"
)

// responseBuffers are reused for writing answers: one is as large as the answer it wrote.
var responseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledResponse keeps an occasional huge answer's buffer out of the pool.
const maxPooledResponse = 1 << 20

// escapedNote is where the response cache leaves the data of the answer it served, which it stores
// already escaped as json.Marshal writes a RawMessage: the JSON transport copies that data as it is.
type escapedNote struct{ data []byte }

type escapedNoteKey struct{}

// withEscapedNote gives the operation run with the returned context a note for the response cache.
func withEscapedNote(ctx context.Context) (context.Context, *escapedNote) {
	n := &escapedNote{}
	return context.WithValue(ctx, escapedNoteKey{}, n), n
}

// noteEscaped records that data, served as an answer's data, is already escaped (no-op outside the
// JSON transport).
func noteEscaped(ctx context.Context, data []byte) {
	if n, ok := ctx.Value(escapedNoteKey{}).(*escapedNote); ok {
		n.data = data
	}
}

// marshalResponse returns v as json.Marshal writes it, into a pooled buffer that release returns.
// A *graphql.Response (the usual answer) is written without encoding/json going over its data a
// second time: gqlgen has already written it as compact JSON, so it is copied with only the
// escapes json.Marshal adds to a RawMessage (<, >, & and U+2028/U+2029); responsejson_test.go
// proves the bytes are the same. Data that is escaped (the very slice, not equal bytes: an outer
// interceptor may have replaced it) is copied as it is. Anything else goes through json.Marshal.
func marshalResponse(v any, escaped []byte) (b []byte, release func(), err error) {
	buf := responseBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	release = func() {
		if buf.Cap() <= maxPooledResponse {
			responseBuffers.Put(buf)
		}
	}
	resp, ok := v.(*graphql.Response)
	if ok && resp != nil && resp.Label == "" && resp.Path == nil && resp.HasNext == nil && len(resp.Data) > 0 {
		if out, ok, err := appendResponse(buf.AvailableBuffer(), resp, escaped); err != nil {
			release()
			return nil, nil, err
		} else if ok {
			buf.Write(out)
			return buf.Bytes(), release, nil
		}
	}
	j, err := json.Marshal(v)
	if err != nil {
		release()
		return nil, nil, err
	}
	buf.Write(j)
	return buf.Bytes(), release, nil
}

// appendResponse appends {"errors":…,"data":…,"extensions":…} in graphql.Response's field order;
// ok is false when resp.Data is not compact JSON (then json.Marshal must compact it).
func appendResponse(b []byte, resp *graphql.Response, escaped []byte) (out []byte, ok bool, err error) {
	b = append(b, '{')
	if len(resp.Errors) > 0 {
		j, err := json.Marshal(resp.Errors)
		if err != nil {
			return nil, false, err
		}
		b = append(b, `"errors":`...)
		b = append(b, j...)
		b = append(b, ',')
	}
	b = append(b, `"data":`...)
	if sameSlice(resp.Data, escaped) {
		b = append(b, resp.Data...)
	} else if b, ok = appendEscapedCompact(b, resp.Data); !ok {
		return nil, false, nil
	}
	if len(resp.Extensions) > 0 {
		b = append(b, `,"extensions":`...)
		if b, err = appendJSON(b, resp.Extensions); err != nil {
			return nil, false, err
		}
	}
	return append(b, '}'), true, nil
}

// sameSlice reports whether a and b are the same non-empty bytes in memory.
func sameSlice(a, b []byte) bool {
	return len(a) > 0 && len(a) == len(b) && &a[0] == &b[0]
}

// appendJSON appends v as json.Marshal writes it. Maps of string keys (keys sorted, as json.Marshal
// sorts them), plain strings, integers, booleans and nil, which is what the extensions (cost, rate
// limit, tracing) hold, are written here without reflection; anything else by json.Marshal.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case map[string]any:
		if x == nil {
			return append(b, "null"...), nil
		}
		var arr [8]string
		keys := arr[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case string:
		return appendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}

// appendJSONString appends s quoted as json.Marshal quotes it: printable ASCII that needs no escape
// is copied, anything else goes through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			j, _ := json.Marshal(s) // a string always marshals
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Byte classes appendEscapedCompact stops at; every other byte is copied as it is.
const (
	plainByte     = iota
	quoteByte     // " opens or closes a string
	backslashByte // in a string, escapes the next byte
	htmlByte      // <, > and &, which json.Marshal escapes
	lineSepByte   // 0xE2, the first byte of U+2028 and U+2029, which it escapes too
	spaceByte     // whitespace, allowed only inside strings in compact JSON
)

var compactClass = func() (c [256]uint8) {
	c['"'], c['\\'] = quoteByte, backslashByte
	c['<'], c['>'], c['&'] = htmlByte, htmlByte, htmlByte
	c[0xE2] = lineSepByte
	c[' '], c['\t'], c['\n'], c['\r'] = spaceByte, spaceByte, spaceByte, spaceByte
	return c
}()

// appendEscapedCompact appends the JSON value src as encoding/json writes a RawMessage (compacted,
// HTML-escaped), provided src has no whitespace outside its strings (else ok is false). It runs on
// every answer, cached ones included, so plain bytes are skipped four at a time through a table.
func appendEscapedCompact(dst, src []byte) ([]byte, bool) {
	const hex = "0123456789abcdef"
	start, inString := 0, false
	for i, n := 0, len(src); i < n; i++ {
		for i+4 <= n && compactClass[src[i]]|compactClass[src[i+1]]|compactClass[src[i+2]]|compactClass[src[i+3]] == plainByte {
			i += 4
		}
		if i == n {
			break
		}
		c := src[i]
		switch compactClass[c] {
		case quoteByte:
			inString = !inString
		case backslashByte:
			if inString {
				i++ // the escaped byte (a quote, say) is not markup
			}
		case htmlByte:
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			start = i + 1
		case lineSepByte:
			if i+2 < n && src[i+1] == 0x80 && src[i+2]&^1 == 0xA8 {
				dst = append(dst, src[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hex[src[i+2]&0xF])
				start = i + 3
				i += 2
			}
		case spaceByte:
			if !inString {
				return dst, false
			}
		}
	}
	return append(dst, src[start:]...), true
}
