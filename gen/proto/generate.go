// Package proto holds the Go code generated from api/proto (the envd process
// and filesystem services). Never edit the generated files by hand: change the
// .proto files and run go generate ./gen/proto.
package proto

//go:generate sh -c "cd ../../api/proto && go tool -modfile=../../tools/go.mod buf generate"
