package sandpit

import (
	"io"
	"net/http"
	"time"
)

// Options are sealed interfaces: only this package implements them, so new
// options can be added without breaking callers. One option may apply to
// several calls (WithTimeout applies to Create, Run, PTY.Create, Watch and
// RunCode, each with the meaning documented on it).

// ClientOption configures NewClient.
type ClientOption interface{ applyClient(*clientConfig) }

// CreateOption configures Client.Create.
type CreateOption interface{ applyCreate(*createConfig) }

// ConnectOption configures Client.Connect.
type ConnectOption interface{ applyConnect(*connectConfig) }

// ListOption configures Client.List: filters and page size.
type ListOption interface{ applyList(*listConfig) }

// CommandOption configures Commands.Run, Commands.Start and Commands.Connect.
type CommandOption interface{ applyCommand(*commandConfig) }

// PTYOption configures PTY.Create and PTY.Connect.
type PTYOption interface{ applyPTY(*ptyConfig) }

// FileOption configures the Files calls.
type FileOption interface{ applyFile(*fileConfig) }

// WatchOption configures Files.Watch.
type WatchOption interface{ applyWatch(*watchConfig) }

// RunCodeOption configures Sandbox.RunCode.
type RunCodeOption interface{ applyRunCode(*runCodeConfig) }

// CodeContextOption configures Sandbox.CreateCodeContext.
type CodeContextOption interface{ applyCodeContext(*codeContextConfig) }

type clientConfig struct {
	apiURL, sandboxURL, apiKey, domain string
	httpClient                         *http.Client
	requestTimeout                     time.Duration
}

type createConfig struct {
	template       string
	timeout        time.Duration
	metadata, envs map[string]string
	secure         *bool
	internet       *bool
	lifecycle      *Lifecycle
	network        *Network
	limits         *NetworkLimits
}

type connectConfig struct {
	timeout time.Duration
}

type listConfig struct {
	metadata map[string]string
	states   []SandboxState
	template string
	limit    int
}

type commandConfig struct {
	envs             map[string]string
	cwd, user        string
	timeout          time.Duration
	stdin            bool
	onStdout         func(string)
	onStderr         func(string)
	stdoutW, stderrW io.Writer
}

type ptyConfig struct {
	envs      map[string]string
	cwd, user string
	timeout   time.Duration
	output    io.Writer
}

type fileConfig struct {
	user     string
	depth    int
	metadata map[string]string
}

type watchConfig struct {
	user      string
	recursive bool
	timeout   time.Duration
}

type runCodeConfig struct {
	language         string
	contextID        string
	envs             map[string]string
	timeout          time.Duration
	onStdout         func(string)
	onStderr         func(string)
	stdoutW, stderrW io.Writer
	onResult         func(Result)
	onError          func(*ExecutionError)
}

type codeContextConfig struct {
	language, cwd string
}

// WithAPIURL sets the control-plane URL (default: $E2B_API_URL, else
// $SANDPIT_URL, else https://api.$E2B_DOMAIN).
func WithAPIURL(url string) ClientOption { return apiURLOption(url) }

type apiURLOption string

func (o apiURLOption) applyClient(c *clientConfig) { c.apiURL = string(o) }

// WithSandboxURL sets the one URL all in-sandbox traffic goes to, the
// sandbox named in headers (default: $E2B_SANDBOX_URL, else $SANDPIT_URL;
// when neither is set, each sandbox port has its own host under the domain).
func WithSandboxURL(url string) ClientOption { return sandboxURLOption(url) }

type sandboxURLOption string

func (o sandboxURLOption) applyClient(c *clientConfig) { c.sandboxURL = string(o) }

// WithURL sets both the API and the sandbox URL, as $SANDPIT_URL does.
func WithURL(url string) ClientOption { return urlOption(url) }

type urlOption string

func (o urlOption) applyClient(c *clientConfig) { c.apiURL, c.sandboxURL = string(o), string(o) }

// WithAPIKey sets the API key (default: $SANDPIT_API_KEY, else $E2B_API_KEY).
func WithAPIKey(key string) ClientOption { return apiKeyOption(key) }

type apiKeyOption string

func (o apiKeyOption) applyClient(c *clientConfig) { c.apiKey = string(o) }

// WithDomain sets the sandbox domain used for Host and, without a sandbox
// URL, for reaching sandboxes (default: $E2B_DOMAIN, else e2b.app).
func WithDomain(domain string) ClientOption { return domainOption(domain) }

type domainOption string

func (o domainOption) applyClient(c *clientConfig) { c.domain = string(o) }

// WithHTTPClient sets the HTTP client. Its Timeout must be zero, or
// streaming calls are cut short; use WithRequestTimeout instead.
func WithHTTPClient(hc *http.Client) ClientOption { return httpClientOption{hc} }

type httpClientOption struct{ hc *http.Client }

func (o httpClientOption) applyClient(c *clientConfig) { c.httpClient = o.hc }

// WithRequestTimeout bounds each non-streaming request whose context has no
// deadline of its own (default 60s; 0 means no bound).
func WithRequestTimeout(d time.Duration) ClientOption { return requestTimeoutOption(d) }

type requestTimeoutOption time.Duration

func (o requestTimeoutOption) applyClient(c *clientConfig) { c.requestTimeout = time.Duration(o) }

// WithTemplate picks the template to create a sandbox from (default "base";
// "code-interpreter-v1" for RunCode against E2B's cloud), or filters List by
// template.
func WithTemplate(template string) interface {
	CreateOption
	ListOption
} {
	return templateOption(template)
}

type templateOption string

func (o templateOption) applyCreate(c *createConfig) { c.template = string(o) }
func (o templateOption) applyList(c *listConfig)     { c.template = string(o) }

// WithTimeout sets a lifetime:
//   - Create, Connect: how long the sandbox lives before it is killed
//     (rounded up to whole seconds; default: the server's, 300s);
//   - Run, Start, PTY.Create, Watch: how long the command, terminal or
//     watch may run before the sandbox ends it (default 60s, as the E2B SDKs;
//     0 means no limit);
//   - RunCode: how long the execution may take (default 60s; 0: no limit).
func WithTimeout(d time.Duration) interface {
	CreateOption
	ConnectOption
	CommandOption
	PTYOption
	WatchOption
	RunCodeOption
} {
	return timeoutOption(d)
}

type timeoutOption time.Duration

func (o timeoutOption) applyCreate(c *createConfig)   { c.timeout = time.Duration(o) }
func (o timeoutOption) applyConnect(c *connectConfig) { c.timeout = time.Duration(o) }
func (o timeoutOption) applyCommand(c *commandConfig) { c.timeout = time.Duration(o) }
func (o timeoutOption) applyPTY(c *ptyConfig)         { c.timeout = time.Duration(o) }
func (o timeoutOption) applyWatch(c *watchConfig)     { c.timeout = time.Duration(o) }
func (o timeoutOption) applyRunCode(c *runCodeConfig) { c.timeout = time.Duration(o) }

// WithEnvs sets environment variables: for every process of the sandbox
// (Create), or for one command, terminal or code execution.
func WithEnvs(envs map[string]string) interface {
	CreateOption
	CommandOption
	PTYOption
	RunCodeOption
} {
	return envsOption(envs)
}

type envsOption map[string]string

func (o envsOption) applyCreate(c *createConfig)   { c.envs = o }
func (o envsOption) applyCommand(c *commandConfig) { c.envs = o }
func (o envsOption) applyPTY(c *ptyConfig)         { c.envs = o }
func (o envsOption) applyRunCode(c *runCodeConfig) { c.envs = o }

// WithMetadata attaches metadata to a new sandbox (Create), filters List to
// sandboxes carrying all the given pairs, or stores metadata with a file
// (Files.Write).
func WithMetadata(md map[string]string) interface {
	CreateOption
	ListOption
	FileOption
} {
	return metadataOption(md)
}

type metadataOption map[string]string

func (o metadataOption) applyCreate(c *createConfig) { c.metadata = o }
func (o metadataOption) applyList(c *listConfig)     { c.metadata = o }
func (o metadataOption) applyFile(c *fileConfig)     { c.metadata = o }

// WithSecure(false) creates a sandbox without an access token: anyone who
// can reach the server can then talk to its agent. The default is secure.
func WithSecure(secure bool) CreateOption { return secureOption(secure) }

type secureOption bool

func (o secureOption) applyCreate(c *createConfig) { b := bool(o); c.secure = &b }

// WithInternetAccess allows (the default) or denies the sandbox outbound
// network access.
func WithInternetAccess(allow bool) CreateOption { return internetOption(allow) }

type internetOption bool

func (o internetOption) applyCreate(c *createConfig) { b := bool(o); c.internet = &b }

// WithState filters List by state (default: running and paused).
func WithState(states ...SandboxState) ListOption { return stateOption(states) }

type stateOption []SandboxState

func (o stateOption) applyList(c *listConfig) { c.states = o }

// WithLimit sets List's page size (1..100; default the server's, 100). The
// iterator still fetches every page.
func WithLimit(n int) ListOption { return limitOption(n) }

type limitOption int

func (o limitOption) applyList(c *listConfig) { c.limit = int(o) }

// WithUser runs a command or terminal, or does a file operation, as this
// sandbox user (default: the sandbox's default user, "user" on E2B templates).
func WithUser(user string) interface {
	CommandOption
	PTYOption
	FileOption
	WatchOption
} {
	return userOption(user)
}

type userOption string

func (o userOption) applyCommand(c *commandConfig) { c.user = string(o) }
func (o userOption) applyPTY(c *ptyConfig)         { c.user = string(o) }
func (o userOption) applyFile(c *fileConfig)       { c.user = string(o) }
func (o userOption) applyWatch(c *watchConfig)     { c.user = string(o) }

// WithCwd sets the working directory of a command, terminal or new code
// context (default: the user's home).
func WithCwd(dir string) interface {
	CommandOption
	PTYOption
	CodeContextOption
} {
	return cwdOption(dir)
}

type cwdOption string

func (o cwdOption) applyCommand(c *commandConfig)         { c.cwd = string(o) }
func (o cwdOption) applyPTY(c *ptyConfig)                 { c.cwd = string(o) }
func (o cwdOption) applyCodeContext(c *codeContextConfig) { c.cwd = string(o) }

// WithStdin keeps the command's stdin open, for SendStdin and CloseStdin.
// Without it stdin is empty, as in the E2B SDKs.
func WithStdin() CommandOption { return stdinOption{} }

type stdinOption struct{}

func (stdinOption) applyCommand(c *commandConfig) { c.stdin = true }

// OnStdout calls fn with each chunk of standard output as it arrives (for a
// command, chunks are whole UTF-8 sequences but not necessarily whole lines;
// for RunCode, each call is one line as the kernel reported it). Calls come
// one at a time from the goroutine reading the stream; a slow fn slows it.
func OnStdout(fn func(string)) interface {
	CommandOption
	RunCodeOption
} {
	return onStdoutOption(fn)
}

type onStdoutOption func(string)

func (o onStdoutOption) applyCommand(c *commandConfig) { c.onStdout = o }
func (o onStdoutOption) applyRunCode(c *runCodeConfig) { c.onStdout = o }

// OnStderr is OnStdout for standard error.
func OnStderr(fn func(string)) interface {
	CommandOption
	RunCodeOption
} {
	return onStderrOption(fn)
}

type onStderrOption func(string)

func (o onStderrOption) applyCommand(c *commandConfig) { c.onStderr = o }
func (o onStderrOption) applyRunCode(c *runCodeConfig) { c.onStderr = o }

// WithStdout copies standard output to w as it arrives. A write error
// stops the call.
func WithStdout(w io.Writer) interface {
	CommandOption
	RunCodeOption
} {
	return stdoutOption{w}
}

type stdoutOption struct{ w io.Writer }

func (o stdoutOption) applyCommand(c *commandConfig) { c.stdoutW = o.w }
func (o stdoutOption) applyRunCode(c *runCodeConfig) { c.stdoutW = o.w }

// WithStderr copies standard error to w as it arrives.
func WithStderr(w io.Writer) interface {
	CommandOption
	RunCodeOption
} {
	return stderrOption{w}
}

type stderrOption struct{ w io.Writer }

func (o stderrOption) applyCommand(c *commandConfig) { c.stderrW = o.w }
func (o stderrOption) applyRunCode(c *runCodeConfig) { c.stderrW = o.w }

// WithOutput sends a terminal's output to w instead of the handle's Read.
func WithOutput(w io.Writer) PTYOption { return outputOption{w} }

type outputOption struct{ w io.Writer }

func (o outputOption) applyPTY(c *ptyConfig) { c.output = o.w }

// WithDepth makes Files.List descend this many levels (default 1: the
// directory's own entries).
func WithDepth(depth int) FileOption { return depthOption(depth) }

type depthOption int

func (o depthOption) applyFile(c *fileConfig) { c.depth = int(o) }

// WithRecursive makes Files.Watch report events in subdirectories too.
func WithRecursive() WatchOption { return recursiveOption{} }

type recursiveOption struct{}

func (recursiveOption) applyWatch(c *watchConfig) { c.recursive = true }

// WithLanguage picks the language of RunCode or of a new code context:
// "python" (default), "javascript", "typescript", "r", "bash", ... RunCode
// rejects it together with WithCodeContext.
func WithLanguage(lang string) interface {
	RunCodeOption
	CodeContextOption
} {
	return languageOption(lang)
}

type languageOption string

func (o languageOption) applyRunCode(c *runCodeConfig)         { c.language = string(o) }
func (o languageOption) applyCodeContext(c *codeContextConfig) { c.language = string(o) }

// WithCodeContext runs the code in this context (see CreateCodeContext), so
// it shares its state.
func WithCodeContext(cc CodeContext) RunCodeOption { return contextOption(cc.ID) }

type contextOption string

func (o contextOption) applyRunCode(c *runCodeConfig) { c.contextID = string(o) }

// OnResult calls fn with each rich result (display() output, the last
// expression's value) as it arrives.
func OnResult(fn func(Result)) RunCodeOption { return onResultOption(fn) }

type onResultOption func(Result)

func (o onResultOption) applyRunCode(c *runCodeConfig) { c.onResult = o }

// OnError calls fn when the executed code raises an error.
func OnError(fn func(*ExecutionError)) RunCodeOption { return onErrorOption(fn) }

type onErrorOption func(*ExecutionError)

func (o onErrorOption) applyRunCode(c *runCodeConfig) { c.onError = o }
