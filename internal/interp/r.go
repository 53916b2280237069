package interp

import "strings"

// rSpec runs IRkernel (Debian r-cran-irkernel) when R is installed.
func rSpec(r string) jupyterSpec {
	return jupyterSpec{
		name: "ir",
		argv: func(connFile string) []string {
			return []string{r, "--slave", "-e", "IRkernel::main()", "--args", connFile}
		},
		envCode: func(set map[string]string, unset []string) string {
			var b strings.Builder
			for k, v := range set {
				// A JSON string is a valid R string literal.
				b.WriteString("do.call(Sys.setenv, setNames(list(" + jsonLiteral(v) + "), " + jsonLiteral(k) + "))\n")
			}
			for _, k := range unset {
				b.WriteString("Sys.unsetenv(" + jsonLiteral(k) + ")\n")
			}
			return b.String()
		},
		chdirCode: func(dir string) string {
			return "setwd(" + jsonLiteral(dir) + ")\n"
		},
	}
}
