package restapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// decodeBody reads r's JSON body into v. Unknown fields are ignored (the
// SDKs send more than sandpit uses). An empty body is an error when
// required, else leaves v as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, required bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		if required {
			return errdefs.New(errdefs.ErrInvalidArgument, "request body is required (a JSON object)")
		}
		return nil
	}
	if err != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid JSON body: "+describeJSONError(err))
	}
	if dec.More() {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid JSON body: unexpected data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("%s (at byte %d)", syn.Error(), syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("the body must be a JSON object, not %s", typ.Value)
		}
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &tooBig):
		return fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends too early"
	default:
		return err.Error()
	}
}

// jsonKind names a Go kind the way a JSON user thinks of it.
func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer in range"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	default:
		return goKind
	}
}
