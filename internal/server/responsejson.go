package server

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/99designs/gqlgen/graphql"
)

// responseBuffers are reused for writing answers: one is as large as the answer it wrote.
var responseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledResponse keeps an occasional huge answer's buffer out of the pool.
const maxPooledResponse = 1 << 20

// marshalResponse returns v as json.Marshal writes it, into a pooled buffer that release returns.
// A *graphql.Response (the usual answer) is written without encoding/json going over its data a
// second time: gqlgen has already written it as compact JSON, so it is copied with only the
// escapes json.Marshal adds to a RawMessage (<, >, & and U+2028/U+2029); responsejson_test.go
// proves the bytes are the same. Anything else goes through json.Marshal.
func marshalResponse(v any) (b []byte, release func(), err error) {
	buf := responseBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	release = func() {
		if buf.Cap() <= maxPooledResponse {
			responseBuffers.Put(buf)
		}
	}
	resp, ok := v.(*graphql.Response)
	if ok && resp != nil && resp.Label == "" && resp.Path == nil && resp.HasNext == nil && len(resp.Data) > 0 {
		if out, ok, err := appendResponse(buf.AvailableBuffer(), resp); err != nil {
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
func appendResponse(b []byte, resp *graphql.Response) (out []byte, ok bool, err error) {
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
	if b, ok = appendEscapedCompact(b, resp.Data); !ok {
		return nil, false, nil
	}
	if len(resp.Extensions) > 0 {
		j, err := json.Marshal(resp.Extensions)
		if err != nil {
			return nil, false, err
		}
		b = append(b, `,"extensions":`...)
		b = append(b, j...)
	}
	return append(b, '}'), true, nil
}

// appendEscapedCompact appends the JSON value src as encoding/json writes a RawMessage (compacted,
// HTML-escaped), provided src has no whitespace outside its strings (else ok is false).
func appendEscapedCompact(dst, src []byte) ([]byte, bool) {
	const hex = "0123456789abcdef"
	start, inString, escaped := 0, false, false
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '<' || c == '>' || c == '&':
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			start = i + 1
		case c == 0xE2 && i+2 < len(src) && src[i+1] == 0x80 && src[i+2]&^1 == 0xA8:
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[src[i+2]&0xF])
			start = i + 3
			i += 2
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return dst, false
		}
	}
	return append(dst, src[start:]...), true
}
