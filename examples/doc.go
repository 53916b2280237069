// Package examples holds runnable programs that show the sandpit Go SDK in
// use, one directory each: hello, filesystem, streaming, closing, and agent
// (an AI coding agent's reason-execute-reflect loop). Each reads the server
// from SANDPIT_URL and SANDPIT_API_KEY (or the E2B variables):
//
//	SANDPIT_URL=http://127.0.0.1:49982 SANDPIT_API_KEY=e2b_... go run ./examples/hello
//
// examples_test.go runs them all against a real server.
package examples
