package resmgr

import (
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/resmgr/node"
)

// PoolConfig is a pool as upstream's controller keeps it; the field order
// is upstream's key order, so the JSON is byte for byte the same.
type PoolConfig struct {
	Meta PoolMeta `json:"meta"`
	Spec PoolSpec `json:"spec"`
}

// PoolMeta is a pool's "meta".
type PoolMeta struct {
	Name   string     `json:"name"`
	UUID   string     `json:"uuid"`
	Type   string     `json:"type"`
	Access PoolAccess `json:"access"`
}

// PoolAccess lists the registration names of the nodes that reach a pool.
type PoolAccess struct {
	Nodes []string `json:"nodes"`
}

// PoolSpec is a pool's "spec"; which members exist depends on the type:
// filesystem {"path"}, nfs {"server", "export", "mount-options",
// "mount"}, linux_bridge {"switch", "export"}.
type PoolSpec struct {
	Path         *string         `json:"path,omitempty"`
	Server       string          `json:"server,omitempty"`
	Switch       map[string]any  `json:"switch,omitempty"`
	Export       any             `json:"export,omitempty"`
	MountOptions *map[string]any `json:"mount-options,omitempty"`
	Mount        *map[string]any `json:"mount,omitempty"`
	// AllowOtherWriters (ours; the config's allow_other_writers) accepts
	// a pool directory others may write, such as an NFS export with
	// root_squash; without it the node refuses such a pool at attach.
	AllowOtherWriters bool `json:"allow-other-writers,omitempty"`
	// Overcommit (ours; the config's overcommit) lets volumes be made
	// beyond the pool's free space; without it a volume counts its full
	// size, sparse or not.
	Overcommit bool `json:"overcommit,omitempty"`
}

// ResourceConfig is a resource as upstream's controller keeps it.
type ResourceConfig struct {
	Meta ResourceMeta `json:"meta"`
	Spec ResourceSpec `json:"spec"`
}

// ResourceMeta is a resource's "meta".
type ResourceMeta struct {
	UUID       string `json:"uuid"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Pool       string `json:"pool"`
	Allocated  bool   `json:"allocated"`
	VolumeType string `json:"volume-type,omitempty"`
	PortType   string `json:"port-type,omitempty"`
}

// ResourceSpec is a resource's "spec": a file volume's {"size" (bytes as
// a string, as upstream), "allocation", "filename", "uri" (node -> path)},
// or a tap port's {"switch", "fds", "ifname"}.
type ResourceSpec struct {
	Size       *string           `json:"size,omitempty"`
	Allocation any               `json:"allocation"`
	Filename   string            `json:"filename,omitempty"`
	URI        map[string]string `json:"uri,omitempty"`
	Switch     *string           `json:"switch,omitempty"`
	FDs        []string          `json:"fds,omitempty"`
	Ifname     *string           `json:"ifname,omitempty"`
}

// MarshalJSON writes a volume's uri as {} when empty and a port's spec
// without volume members, as upstream's dicts are.
func (s ResourceSpec) MarshalJSON() ([]byte, error) {
	if s.Ifname != nil {
		fds := s.FDs
		if fds == nil {
			fds = []string{}
		}
		sw := ""
		if s.Switch != nil {
			sw = *s.Switch
		}
		return json.Marshal(struct {
			Switch string   `json:"switch"`
			FDs    []string `json:"fds"`
			Ifname string   `json:"ifname"`
		}{sw, fds, *s.Ifname})
	}
	uri := s.URI
	if uri == nil {
		uri = map[string]string{}
	}
	size := ""
	if s.Size != nil {
		size = *s.Size
	}
	return json.Marshal(struct {
		Size       string            `json:"size"`
		Allocation any               `json:"allocation"`
		Filename   string            `json:"filename"`
		URI        map[string]string `json:"uri"`
	}{size, s.Allocation, s.Filename, uri})
}

func newUUID() string {
	var b [16]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// alnum8 is upstream's random suffix: 8 letters and digits.
func alnum8() string {
	const set = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	var b [8]byte
	crand.Read(b[:])
	for i := range b {
		b[i] = set[int(b[i])%len(set)]
	}
	return string(b[:])
}

// ConfigError is a bad entry in the cluster config's "pools".
type ConfigError struct {
	Path string
	Msg  string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("pools: %s: %s", e.Path, e.Msg) }

// namedParams is one configured pool, in file order.
type namedParams struct {
	Name   string
	Params gjson.Result
}

// parsePools reads upstream's {"<group>": {"<pool name>": params}} in file
// order (select_pool takes the first match, so order matters); the group
// key is ignored, as upstream does.
func parsePools(raw []byte) ([]namedParams, error) {
	if len(raw) == 0 || strings.TrimSpace(string(raw)) == "null" {
		return nil, nil
	}
	if !gjson.ValidBytes(raw) {
		return nil, &ConfigError{Path: "", Msg: "not valid JSON"}
	}
	root := gjson.ParseBytes(raw)
	if !root.IsObject() {
		return nil, &ConfigError{Path: "", Msg: "expected an object of pool groups"}
	}
	var out []namedParams
	var err error
	root.ForEach(func(g, grp gjson.Result) bool {
		if !grp.IsObject() {
			err = &ConfigError{Path: g.String(), Msg: "expected an object of pool name to pool parameters"}
			return false
		}
		grp.ForEach(func(n, p gjson.Result) bool {
			if !p.IsObject() {
				err = &ConfigError{Path: g.String() + "." + n.String(), Msg: "expected an object of pool parameters"}
				return false
			}
			out = append(out, namedParams{Name: n.String(), Params: p})
			return true
		})
		return err == nil
	})
	return out, err
}

// poolFromParams builds a pool's config from upstream's pool parameters.
func poolFromParams(name string, p gjson.Result, allNodes []string) (PoolConfig, error) {
	at := func(msg string, a ...any) error { return &ConfigError{Path: name, Msg: fmt.Sprintf(msg, a...)} }
	if !node.ValidName(name) {
		return PoolConfig{}, at("pool name must be letters, digits, '_', '.', '+' or '-'")
	}
	c := PoolConfig{Meta: PoolMeta{Name: name, UUID: newUUID(), Type: p.Get("type").String()}}
	for _, n := range p.Get("access.nodes").Array() {
		c.Meta.Access.Nodes = append(c.Meta.Access.Nodes, n.String())
	}
	if len(c.Meta.Access.Nodes) == 0 {
		// upstream: an empty access list means every registered node.
		c.Meta.Access.Nodes = append([]string{}, allNodes...)
	}
	c.Spec.AllowOtherWriters = p.Get("allow_other_writers").Bool()
	c.Spec.Overcommit = p.Get("overcommit").Bool()
	kind, known := poolKinds[c.Meta.Type]
	if !known {
		return c, &UnknownPoolTypeError{Type: c.Meta.Type}
	}
	if err := kind.fromParams(&c, p); err != nil {
		return c, at("%v", err)
	}
	return c, nil
}

// ValidatePools checks a cluster config's "pools" section against the
// names of its hosts, before anything is deployed: every pool's type and
// parameters, and that each access node is one of the hosts.
func ValidatePools(raw []byte, hosts []string) error {
	params, err := parsePools(raw)
	if err != nil {
		return err
	}
	var errs []error
	seen := map[string]bool{}
	for _, np := range params {
		if seen[np.Name] {
			errs = append(errs, &ConfigError{Path: np.Name, Msg: "pool name used twice"})
		}
		seen[np.Name] = true
		c, err := poolFromParams(np.Name, np.Params, hosts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range c.Meta.Access.Nodes {
			if !slices.Contains(hosts, n) {
				errs = append(errs, &ConfigError{Path: np.Name + ".access.nodes", Msg: fmt.Sprintf("%q is not a host of this config", n)})
			}
		}
	}
	return errors.Join(errs...)
}
