// Package interp is sandpit's code interpreter: the HTTP API that E2B's
// code-interpreter SDKs speak on sandbox port 49999 (POST /execute streaming
// NDJSON, /contexts), served from inside the sandbox by the agent.
//
// Each context is one kernel with its own state and working directory:
//
//   - Python runs in a real Jupyter kernel (ipykernel) driven over the Jupyter
//     messaging protocol on ZeroMQ (jupyter.go, wire.go), so IPython semantics
//     (last expression value, display(), rich MIME results, !shell, %magic)
//     come from IPython itself. R uses the same client with IRkernel when it
//     is installed.
//   - JavaScript and TypeScript run in a small Node program shipped inside the
//     binary (node_kernel.js) that evaluates cells in one node:vm context.
//   - Bash runs in one long-lived interactive bash process per context.
//
// Kernel start is the slowest step of a sandbox's life, so the Server keeps
// warm spare kernels per language (pool.go) and starts the default Python
// context as soon as it is created.
package interp
