// Package openapi holds the Go types and net/http server interface generated
// from api/openapi/sandpit.yaml (the control-plane REST API). Never edit the
// generated file by hand: change the spec and run go generate.
package openapi

//go:generate go tool -modfile=../../tools/go.mod oapi-codegen -config cfg.yaml ../../api/openapi/sandpit.yaml
