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
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sandpit-dev/sandpit/gen/proto/process"
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

// rpcMessage peeks at the request of a Connect (or gRPC) call and returns
// its first message, inflated; whole is false when the peek ended inside
// it (then msg is its start). ok is false for an unknown content type or
// compression, or a body too short to hold a message.
func rpcMessage(out *http.Request) (msg []byte, isJSON, whole, ok bool) {
	ct, _, _ := strings.Cut(out.Header.Get("Content-Type"), ";")
	ct = strings.ToLower(strings.TrimSpace(ct))
	var enveloped bool
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
		return nil, false, false, false
	}
	msg = peek(out, enveloped)
	compressed := encoding != "" && !strings.EqualFold(encoding, "identity")
	whole = true
	if enveloped {
		if len(msg) < 5 {
			return nil, false, false, false
		}
		size := int(binary.BigEndian.Uint32(msg[1:5]))
		compressed = msg[0]&1 != 0
		if whole = 5+size <= len(msg); whole {
			msg = msg[5 : 5+size]
		} else {
			msg = msg[5:]
		}
	} else if out.ContentLength < 0 && len(msg) == peekLimit || out.ContentLength > int64(len(msg)) {
		whole = false
	}
	if compressed {
		// A cut compressed message is not worth inflating by halves.
		if !whole || !strings.EqualFold(encoding, "gzip") {
			return nil, false, false, false
		}
		zr, err := gzip.NewReader(bytes.NewReader(msg))
		if err != nil {
			return nil, false, false, false
		}
		if msg, err = io.ReadAll(io.LimitReader(zr, maxInflated)); err != nil {
			return nil, false, false, false
		}
	}
	return msg, isJSON, whole, true
}

// decodeRPC decodes the first message of a Connect (or gRPC) call into m
// (see rpcMessage). It reports whether that worked: not for a message past
// peekLimit, or bad bytes.
func decodeRPC(out *http.Request, m proto.Message) bool {
	msg, isJSON, whole, ok := rpcMessage(out)
	if !ok || !whole {
		return false
	}
	return unmarshal(msg, isJSON, m)
}

func unmarshal(msg []byte, isJSON bool, m proto.Message) bool {
	if isJSON {
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(msg, m) == nil
	}
	return proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(msg, m) == nil
}

// startCommand returns the command line of a process.Process/Start call,
// "(unparsed)" when there is none to read. A StartRequest larger than the
// peek (a big environment, say) still gives the command and the arguments
// that precede the cut: the SDKs write them first.
func startCommand(out *http.Request) string {
	msg, isJSON, whole, ok := rpcMessage(out)
	if !ok {
		return unparsed
	}
	if whole {
		var m process.StartRequest
		if !unmarshal(msg, isJSON, &m) || m.GetProcess() == nil {
			return unparsed
		}
		return commandLine(m.GetProcess().GetCmd(), m.GetProcess().GetArgs())
	}
	var cmd string
	var args []string
	if isJSON {
		cmd, args, ok = partialStartJSON(msg)
	} else {
		cmd, args, ok = partialStartProto(msg)
	}
	if !ok {
		return unparsed
	}
	d := commandLine(cmd, args)
	if !strings.HasSuffix(d, "…") {
		d += "…" // there may be more arguments past the cut
	}
	return d
}

// Field numbers of process.StartRequest.process and of ProcessConfig's cmd
// and args.
const (
	startProcessField = 1
	configCmdField    = 1
	configArgsField   = 2
)

// partialStartProto reads cmd and args from the start of a StartRequest
// in protobuf, cut anywhere. ok says whether cmd was there.
func partialStartProto(b []byte) (cmd string, args []string, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil, false
		}
		b = b[n:]
		if num != startProcessField || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return "", nil, false
			}
			b = b[n:]
			continue
		}
		size, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return "", nil, false
		}
		b = b[n:]
		if size < uint64(len(b)) {
			b = b[:size]
		}
		// The ProcessConfig, or its start.
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				break
			}
			b = b[n:]
			if typ == protowire.BytesType && (num == configCmdField || num == configArgsField) {
				size, n := protowire.ConsumeVarint(b)
				if n < 0 {
					break
				}
				b = b[n:]
				v := b[:min(size, uint64(len(b)))]
				b = b[len(v):]
				// A value the cut split keeps its start.
				s := strings.ToValidUTF8(string(v), "")
				if num == configCmdField {
					cmd, ok = s, true
				} else {
					args = append(args, s)
				}
				continue
			}
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				break
			}
			b = b[n:]
		}
		return cmd, args, ok
	}
	return "", nil, false
}

// partialStartJSON reads cmd and args from the start of a StartRequest in
// JSON, cut anywhere. ok says whether cmd was there.
func partialStartJSON(b []byte) (cmd string, args []string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if !enterObject(dec, "process") {
		return "", nil, false
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", nil, false
	}
	for {
		t, err := dec.Token()
		key, isKey := t.(string)
		if err != nil || !isKey {
			return cmd, args, ok
		}
		switch key {
		case "cmd":
			t, err := dec.Token()
			s, isString := t.(string)
			if err != nil || !isString {
				return cmd, args, ok
			}
			cmd, ok = s, true
		case "args":
			if t, err := dec.Token(); err != nil || t != json.Delim('[') {
				return cmd, args, ok
			}
			for {
				t, err := dec.Token()
				s, isString := t.(string)
				if err != nil || !isString {
					break
				}
				args = append(args, s)
			}
		default:
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return cmd, args, ok
			}
		}
	}
}

// enterObject reads the opening of a JSON object and its keys up to key,
// skipping the values of others.
func enterObject(dec *json.Decoder, key string) bool {
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for {
		t, err := dec.Token()
		k, isKey := t.(string)
		if err != nil || !isKey {
			return false
		}
		if k == key {
			return true
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
}

// jsonStringField returns the string value of key in the JSON object
// that starts buf, even when buf is cut short inside that value (then the
// part that is there). It gives up on anything else cut short.
func jsonStringField(buf []byte, key string) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(buf))
	if !enterObject(dec, key) {
		return "", false
	}
	// The value: read it raw, so that a string the peek cut short still
	// gives its start.
	rest := bytes.TrimLeft(buf[dec.InputOffset():], " \t\r\n")
	rest, ok := bytes.CutPrefix(rest, []byte(":"))
	if !ok {
		return "", false
	}
	rest, ok = bytes.CutPrefix(bytes.TrimLeft(rest, " \t\r\n"), []byte(`"`))
	if !ok {
		return "", false
	}
	// Find the closing quote, or where the last whole character (escape
	// sequences included) ends.
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
