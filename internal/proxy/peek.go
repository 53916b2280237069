package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// peekLimit bounds what is read of an audited request's body before the
// agent gets it: enough for any command line worth reading, small enough
// to hold per request. A larger message's detail is "(unparsed)".
const peekLimit = 64 << 10

// maxInflated bounds a compressed message once inflated.
const maxInflated = 1 << 20

// peek reads the start of out's body and puts it back in front of the
// rest, so the agent reads the same bytes. Enveloped bodies (Connect and
// gRPC streams) are read to the end of their first message only: the
// client may be waiting for an answer before it sends more, or close.
// Other bodies are read to their end or peekLimit.
func peek(out *http.Request, enveloped bool) []byte {
	body := out.Body
	if body == nil || body == http.NoBody {
		return nil
	}
	var buf []byte
	if enveloped {
		var prefix [5]byte
		n, err := io.ReadFull(body, prefix[:])
		buf = prefix[:n]
		if err == nil {
			size := min(int64(binary.BigEndian.Uint32(prefix[1:])), peekLimit-5)
			buf = make([]byte, 5+size)
			copy(buf, prefix[:])
			n, _ = io.ReadFull(body, buf[5:])
			buf = buf[:5+n]
		} else {
			buf = bytes.Clone(buf)
		}
	} else {
		size := int64(peekLimit)
		if out.ContentLength >= 0 && out.ContentLength < size {
			size = out.ContentLength
		}
		buf = make([]byte, size)
		n, _ := io.ReadFull(body, buf)
		buf = buf[:n]
	}
	// A read error (the client went away) is the agent's to see: it
	// comes again from body after the peeked bytes.
	out.Body = &peekedBody{Reader: io.MultiReader(bytes.NewReader(buf), body), body: body}
	return buf
}

// peekedBody is a request body whose start was read for auditing.
type peekedBody struct {
	io.Reader
	body io.ReadCloser
}

func (b *peekedBody) Close() error { return b.body.Close() }

// decodeRPC peeks at the request of a Connect (or gRPC) call and decodes
// its first message into m. It reports whether that worked: not for an
// unknown content type, a message past peekLimit, or bad bytes.
func decodeRPC(out *http.Request, m proto.Message) bool {
	ct, _, _ := strings.Cut(out.Header.Get("Content-Type"), ";")
	ct = strings.ToLower(strings.TrimSpace(ct))
	var enveloped, isJSON bool
	var encoding string
	switch {
	case ct == "application/proto", ct == "application/json":
		// Connect unary: the body is the message.
		isJSON = ct == "application/json"
		encoding = out.Header.Get("Content-Encoding")
	case strings.HasPrefix(ct, "application/connect+"):
		enveloped, isJSON = true, ct == "application/connect+json"
		encoding = out.Header.Get("Connect-Content-Encoding")
	case strings.HasPrefix(ct, "application/grpc"):
		// gRPC and gRPC-Web, which the agent's handlers speak too.
		enveloped, isJSON = true, strings.HasSuffix(ct, "+json")
		encoding = out.Header.Get("Grpc-Encoding")
	default:
		return false
	}
	buf := peek(out, enveloped)
	compressed := encoding != "" && !strings.EqualFold(encoding, "identity")
	if enveloped {
		if len(buf) < 5 {
			return false
		}
		size := int(binary.BigEndian.Uint32(buf[1:5]))
		if 5+size > len(buf) {
			return false // past peekLimit
		}
		compressed = buf[0]&1 != 0
		buf = buf[5 : 5+size]
	} else if out.ContentLength < 0 && len(buf) == peekLimit || out.ContentLength > int64(len(buf)) {
		return false
	}
	if compressed {
		if !strings.EqualFold(encoding, "gzip") {
			return false
		}
		zr, err := gzip.NewReader(bytes.NewReader(buf))
		if err != nil {
			return false
		}
		if buf, err = io.ReadAll(io.LimitReader(zr, maxInflated)); err != nil {
			return false
		}
	}
	if isJSON {
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(buf, m) == nil
	}
	return proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(buf, m) == nil
}

// jsonStringField returns the string value of key in the JSON object
// that starts buf, even when buf is cut short inside that value (then the
// part that is there). It gives up on anything else cut short.
func jsonStringField(buf []byte, key string) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(buf))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	for {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		k, ok := t.(string)
		if !ok {
			return "", false // the object's end: no such key
		}
		if k != key {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", false
			}
			continue
		}
		// The value: read it raw, so that a string the peek cut short
		// still gives its start.
		rest := bytes.TrimLeft(buf[dec.InputOffset():], " \t\r\n")
		rest, ok = bytes.CutPrefix(rest, []byte(":"))
		if !ok {
			return "", false
		}
		rest, ok = bytes.CutPrefix(bytes.TrimLeft(rest, " \t\r\n"), []byte(`"`))
		if !ok {
			return "", false
		}
		// Find the closing quote, or where the last whole character
		// (escape sequences included) ends.
		i := 0
		for i < len(rest) && rest[i] != '"' {
			step := 1
			if rest[i] == '\\' {
				step = 2
				if i+1 < len(rest) && rest[i+1] == 'u' {
					step = 6
				}
			}
			if i+step > len(rest) {
				break
			}
			i += step
		}
		quoted := make([]byte, 0, i+2)
		quoted = append(append(append(quoted, '"'), rest[:i]...), '"')
		var s string
		if err := json.Unmarshal(quoted, &s); err != nil {
			return "", false
		}
		return s, true
	}
}
