// Package interp is sandpit's code interpreter: the HTTP API that E2B's
// code-interpreter SDKs speak on sandbox port 49999 (POST /execute streaming
// NDJSON, /contexts), served from inside the sandbox by the agent.
//
// Each context is one kernel with its own state and working directory:
//
//   - Python runs in a real Jupyter kernel (ipykernel) driven over the Jupyter
//     messaging protocol on ZeroMQ (jupyter.go, wire.go), so IPython semantics
//     (last expression value, display(), rich MIME results, !shell, %magic)
//     come from IPython itself. Figures come back as PNG through the inline
//     backend; DataFrames add e2b/data and figures e2b/chart, as upstream's
//     kernel does, the chart from upstream's own extractor (e2b-charts), and
//     PIL's Image.show() displays the image (python_startup.py).
//   - R uses the same Jupyter client with IRkernel (Debian r-cran-irkernel)
//     when it is installed. IRkernel shows values with display_data, so R
//     results are not main results.
//   - JavaScript runs in a small Node program shipped inside the binary
//     (node_kernel.js) that evaluates cells in its global context, so
//     top-level declarations persist; top-level await uses Node's own REPL
//     rewriter. As in E2B's JavaScript kernel, ESM import declarations
//     become awaited import() calls and TypeScript syntax (import type) is
//     accepted. TypeScript is the same kernel with types stripped by the
//     typescript package (Debian node-typescript) when it is installed; types
//     are not checked.
//   - Bash runs in one interactive bash process per context, so cd, variables
//     and functions persist and an interrupt aborts only the running command.
//     A non-zero exit status is reported as an error (name ExitCodeError,
//     value the status).
//   - Java has no kernel packaged in Debian and is refused.
//
// An execution's ctx ending (the client went away or timed out) interrupts
// the kernel; a kernel that ignores interrupts is killed after a grace
// period, and a kernel that dies is reported as a DeadKernelError line and
// replaced. Executions in one context run one at a time.
//
// As in E2B's code-interpreter template, a new Server has two default
// contexts, Python and JavaScript (where Node is installed), and kernels run
// as root in the sandbox's default working directory.
//
// Kernel start is the slowest step of a sandbox's life, so the Server starts
// the default contexts' kernels as soon as it is created and, once the
// sandbox is in use, keeps warm spare kernels per language (pool.go).
package interp
