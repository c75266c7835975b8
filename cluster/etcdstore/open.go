package etcdstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/cluster"
)

// Environment variables with the etcd credentials. The CLI's flags fall
// back to them, and the runner, which Avocado starts, reads them from the
// environment it inherits: credentials never travel in argv or in the
// state.
const (
	EnvState        = "VTCLUSTER_STATE"
	EnvCA           = "VTCLUSTER_ETCD_CA"
	EnvCert         = "VTCLUSTER_ETCD_CERT"
	EnvKey          = "VTCLUSTER_ETCD_KEY"
	EnvUser         = "VTCLUSTER_ETCD_USER"
	EnvPassword     = "VTCLUSTER_ETCD_PASSWORD"
	EnvPasswordFile = "VTCLUSTER_ETCD_PASSWORD_FILE"
	EnvTimeout      = "VTCLUSTER_STATE_TIMEOUT"
)

// DefaultTimeout bounds each request to etcd: a lab's etcd answers in
// milliseconds, so a request this slow means etcd is unreachable.
const DefaultTimeout = 5 * time.Second

// DefaultPrefix is the key prefix when the URL has no path.
const DefaultPrefix = "/vtcluster"

// Credentials reach etcd; none of it is ever stored in the state.
type Credentials struct {
	// CAFile verifies the server (TLS); empty means the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate (TLS).
	CertFile, KeyFile string
	// Username and Password for etcd's authentication.
	Username, Password string
	// PasswordFile holds Password when Password is empty.
	PasswordFile string
}

// CredentialsFromEnv reads the VTCLUSTER_ETCD_* variables.
func CredentialsFromEnv() Credentials {
	return Credentials{
		CAFile: os.Getenv(EnvCA), CertFile: os.Getenv(EnvCert), KeyFile: os.Getenv(EnvKey),
		Username: os.Getenv(EnvUser), Password: os.Getenv(EnvPassword), PasswordFile: os.Getenv(EnvPasswordFile),
	}
}

// TimeoutFromEnv reads VTCLUSTER_STATE_TIMEOUT as the CLI does: a Go
// duration ("5s") or plain seconds ("5", "2.5"); zero when unset.
func TimeoutFromEnv() (time.Duration, error) {
	v := strings.TrimSpace(os.Getenv(EnvTimeout))
	if v == "" {
		return 0, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e6 {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: %q is not a duration (e.g. 5s, or plain seconds)", EnvTimeout, v)
	}
	return d, nil
}

// Config says where a cluster's state lives in etcd.
type Config struct {
	Endpoints []string // host:port
	Prefix    string   // e.g. "/vtcluster"
	Cluster   string   // the cluster's name, a key below Prefix
	// TLS is set by the etcds:// scheme or by any TLS credential.
	TLS   bool
	Creds Credentials
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

// IsURL reports whether a --state value names an etcd store.
func IsURL(spec string) bool {
	return strings.HasPrefix(spec, "etcd://") || strings.HasPrefix(spec, "etcds://")
}

// ParseURL reads etcd://host:port[,host:port...][/prefix], or etcds://
// for TLS. User names and passwords in the URL are refused: a URL ends up
// in settings files, process lists and logs.
func ParseURL(spec string) (Config, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return Config{}, errors.New("state URL: not a URL (expected etcd://host:port[,host:port]/prefix)")
	}
	// Messages show the URL without any password in it.
	spec = u.Redacted()
	if u.Scheme != "etcd" && u.Scheme != "etcds" {
		return Config{}, fmt.Errorf("state URL %q: scheme must be etcd:// or etcds://", spec)
	}
	if u.User != nil {
		return Config{}, fmt.Errorf("state URL %q: credentials do not belong in the URL; use %s and %s or %s", spec, EnvUser, EnvPasswordFile, EnvPassword)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("state URL %q: no query or fragment expected", spec)
	}
	cfg := Config{TLS: u.Scheme == "etcds", Prefix: DefaultPrefix}
	for _, ep := range strings.Split(u.Host, ",") {
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" {
			return Config{}, fmt.Errorf("state URL %q: endpoint %q is not host:port", spec, ep)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Config{}, fmt.Errorf("state URL %q: endpoint %q: port is not in 1-65535", spec, ep)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	if p := strings.TrimRight(u.Path, "/"); p != "" {
		if path.Clean(p) != p || strings.Contains(p, "//") {
			return Config{}, fmt.Errorf("state URL %q: prefix %q is not a clean path", spec, u.Path)
		}
		cfg.Prefix = p
	}
	return cfg, nil
}

// Opened is a store chosen by a --state value.
type Opened interface {
	cluster.Store
	// Path names the store in messages: a state file or an etcd URL.
	Path() string
}

// Selection is what chooses a cluster's store: the CLI's global flags or
// the runner's settings, each falling back to the same environment.
type Selection struct {
	// State is a --state value: etcd://..., etcds://..., file:///dir, or
	// empty for the state directory.
	State string
	// StateDir is the file store's directory (file:// overrides it).
	StateDir string
	Cluster  string
	Creds    Credentials
	Timeout  time.Duration
}

// OpenState opens the store sel names. Close it with CloseStore.
func OpenState(sel Selection) (Opened, error) {
	switch {
	case IsURL(sel.State):
		cfg, err := ParseURL(sel.State)
		if err != nil {
			return nil, err
		}
		cfg.Cluster, cfg.Creds, cfg.Timeout = sel.Cluster, sel.Creds, sel.Timeout
		return openEtcd(cfg)
	case strings.HasPrefix(sel.State, "file://"):
		u, err := url.Parse(sel.State)
		if err != nil || u.Host != "" || u.Path == "" || u.RawQuery != "" {
			return nil, fmt.Errorf("state URL %q: expected file:///absolute/dir", sel.State)
		}
		return cluster.OpenFileStore(u.Path, sel.Cluster)
	case sel.State != "":
		return nil, fmt.Errorf("state %q: expected etcd://host:port[,host:port]/prefix, etcds://... or file:///dir", sel.State)
	}
	if sel.StateDir == "" {
		return nil, errors.New("no state directory (the home directory is unknown, so there is no default)")
	}
	return cluster.OpenFileStore(sel.StateDir, sel.Cluster)
}

// CloseStore closes st if it holds connections (etcd); file stores hold
// nothing between calls.
func CloseStore(st cluster.Store) {
	if c, ok := st.(interface{ Close() error }); ok {
		c.Close()
	}
}
