package interp

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"
)

// Jupyter wire protocol framing (messaging spec v5.3): a message on a ZeroMQ
// socket is [routing ids..., "<IDS|MSG>", hmac, header, parent_header,
// metadata, content, buffers...]; the HMAC-SHA256 covers the four JSON parts.

const (
	jupyterDelim           = "<IDS|MSG>"
	jupyterProtocolVersion = "5.3"
)

var errBadSignature = errors.New("jupyter message signature mismatch")

// msgHeader is a Jupyter message header.
type msgHeader struct {
	MsgID    string `json:"msg_id"`
	Session  string `json:"session"`
	Username string `json:"username"`
	Date     string `json:"date"`
	MsgType  string `json:"msg_type"`
	Version  string `json:"version"`
}

// message is a decoded Jupyter message. Content stays raw so each message
// type decodes only what it needs.
type message struct {
	Header       msgHeader
	ParentHeader msgHeader
	Content      json.RawMessage
}

// signer signs and verifies messages with the kernel's key.
type signer struct {
	key []byte
}

func (s signer) mac() hash.Hash { return hmac.New(sha256.New, s.key) }

func (s signer) sign(parts ...[]byte) []byte {
	m := s.mac()
	for _, p := range parts {
		m.Write(p)
	}
	sum := m.Sum(nil)
	out := make([]byte, hex.EncodedLen(len(sum)))
	hex.Encode(out, sum)
	return out
}

// encode builds the frames of a message sent by the client (a DEALER socket,
// so without routing ids).
func (s signer) encode(session, msgType string, content any) (frames [][]byte, msgID string, err error) {
	msgID = newID()
	h := msgHeader{
		MsgID:    msgID,
		Session:  session,
		Username: "sandpit",
		Date:     time.Now().UTC().Format(time.RFC3339Nano),
		MsgType:  msgType,
		Version:  jupyterProtocolVersion,
	}
	header, err := json.Marshal(h)
	if err != nil {
		return nil, "", fmt.Errorf("encoding %s header: %w", msgType, err)
	}
	body, err := json.Marshal(content)
	if err != nil {
		return nil, "", fmt.Errorf("encoding %s content: %w", msgType, err)
	}
	parent, meta := []byte("{}"), []byte("{}")
	sig := s.sign(header, parent, meta, body)
	return [][]byte{[]byte(jupyterDelim), sig, header, parent, meta, body}, msgID, nil
}

// decode parses the frames of a received message, skipping routing ids or
// PUB topics before the delimiter, and checks the signature.
func (s signer) decode(frames [][]byte) (message, error) {
	i := 0
	for i < len(frames) && !bytes.Equal(frames[i], []byte(jupyterDelim)) {
		i++
	}
	if len(frames)-i < 6 {
		return message{}, fmt.Errorf("decoding jupyter message: %d frames after delimiter", len(frames)-i-1)
	}
	sig, header, parent, meta, content := frames[i+1], frames[i+2], frames[i+3], frames[i+4], frames[i+5]
	if len(s.key) > 0 {
		want := s.sign(header, parent, meta, content)
		if !hmac.Equal(sig, want) {
			return message{}, errBadSignature
		}
	}
	var m message
	if err := json.Unmarshal(header, &m.Header); err != nil {
		return message{}, fmt.Errorf("decoding jupyter header: %w", err)
	}
	if len(parent) > 2 {
		if err := json.Unmarshal(parent, &m.ParentHeader); err != nil {
			return message{}, fmt.Errorf("decoding jupyter parent header: %w", err)
		}
	}
	m.Content = json.RawMessage(content)
	return m, nil
}

// newID returns 128 random bits in hex, for message, session and context ids.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
