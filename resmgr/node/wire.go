//lint:file-ignore ST1005 these errors reach users as upstream worded them (callers and tests compare the texts)

package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// The wire between the controller and this service: upstream's method
// names, arguments and [code, {"out": ...}] replies, decoded here into
// typed requests. This is the one place where the agent's untyped
// arguments become structs (JSON is the decoder: the XML-RPC values are
// maps, lists, strings, numbers and bools).

// Method names, as upstream's resource backing manager registers them
// under the "resource" service.
const (
	MethodStart          = "start_resource_backing_service"
	MethodStop           = "stop_resource_backing_service"
	MethodCreatePool     = "create_pool_connection"
	MethodDestroyPool    = "destroy_pool_connection"
	MethodCreateBacking  = "create_resource_backing"
	MethodDestroyBacking = "destroy_resource_backing"
	MethodUpdate         = "update_resource_by_backing"
	MethodClone          = "clone_resource_by_backing"
	MethodQuery          = "query_resource_backing"
	// MethodPoolCapacity is ours (upstream left capacity as a TODO): the
	// size and free bytes of a pool's filesystem.
	MethodPoolCapacity = "pool_capacity"
)

// Pool kinds, as upstream names them in the cluster config.
const (
	PoolFilesystem  = "filesystem"
	PoolNFS         = "nfs"
	PoolLinuxBridge = "linux_bridge"
)

// Resource types.
const (
	TypeVolume = "volume"
	TypePort   = "port"
)

// PoolRequest is create_pool_connection's pool_config.
type PoolRequest struct {
	Meta struct {
		UUID string `json:"uuid"`
		Type string `json:"type"`
		Name string `json:"name,omitempty"`
	} `json:"meta"`
	Spec PoolSpec `json:"spec"`
}

// PoolSpec holds the members of every kind; each kind reads its own:
// filesystem {path}, nfs {server, export, mount, mount-options},
// linux_bridge {switch, export}.
type PoolSpec struct {
	Path         string   `json:"path,omitempty"`
	Server       string   `json:"server,omitempty"`
	Export       ifString `json:"export,omitempty"`
	Mount        string   `json:"mount,omitempty"`
	MountOptions string   `json:"mount-options,omitempty"`
	Switch       ifString `json:"switch,omitempty"`
	// AllowOtherWriters accepts a pool directory that users other than
	// root may write (an NFS export with root_squash must be writable by
	// the squashed uid). Ours; upstream had no such check.
	AllowOtherWriters bool `json:"allow-other-writers,omitempty"`
	// Overcommit lets volumes be allocated beyond the pool's free space
	// (they are sparse until written). Ours; without it a volume counts
	// its full size.
	Overcommit bool `json:"overcommit,omitempty"`
}

// ifString is a string, or {"ifname": string} as upstream's linux_bridge
// config has it.
type ifString string

func (s *ifString) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string:
		*s = ifString(x)
	case map[string]any:
		n, _ := x["ifname"].(string)
		*s = ifString(n)
	}
	return nil
}

// BackingRequest is create_resource_backing's backing_config.
type BackingRequest struct {
	Meta struct {
		UUID string `json:"uuid"`
		Type string `json:"type"`
		Pool string `json:"pool"`
	} `json:"meta"`
	Spec struct {
		Filename string `json:"filename,omitempty"`
		URI      string `json:"uri,omitempty"`
		Ifname   string `json:"ifname,omitempty"`
	} `json:"spec"`
}

// UpdateArgs are update_resource_by_backing's and clone's arguments.
type UpdateArgs struct {
	Size   any    `json:"size,omitempty"`
	Source string `json:"source,omitempty"`
}

// Capacity is pool_capacity's reply: bytes of the pool's filesystem
// (statvfs on the node). Free is what an unprivileged writer could use
// (f_bavail), which is what a squashed NFS client gets.
type Capacity struct {
	Size int64 `json:"size"`
	Free int64 `json:"free"`
}

// decode turns an agent argument (a struct of the XML-RPC call) into v.
func decode(in map[string]any, v any) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // sizes stay exact integers
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed request: %w", err)
	}
	return nil
}

// ok builds upstream's [0, {"out": out}] (or [0, {}]).
func ok(out any) []any {
	if out == nil {
		return []any{0, xmlrpc.Struct{}}
	}
	return []any{0, xmlrpc.Struct{{Key: "out", Value: out}}}
}

// failed builds upstream's [1, {"out": message}].
func failed(err error) []any {
	return []any{1, xmlrpc.Struct{{Key: "out", Value: err.Error()}}}
}

// KeyError is an unknown pool or backing id. Upstream's service raised
// KeyError, whose text is the quoted key, and its callers (and ours)
// receive exactly that text, so it is the wire form; IsKeyError reads it
// back in one place.
type KeyError struct{ Key string }

func (e *KeyError) Error() string { return "'" + e.Key + "'" }

// IsKeyError reports whether a failure's text is the KeyError of key.
func IsKeyError(msg, key string) bool { return msg == (&KeyError{Key: key}).Error() }

// IsBusy reports whether a failure's text is destroy_pool_connection's
// refusal of a pool that still has backings.
func IsBusy(msg string) bool { return strings.HasPrefix(msg, ErrPoolInUse.Error()) }

// SyncReply is the "out" of create_resource_backing (with Backing),
// update_resource_by_backing and clone_resource_by_backing: a volume's
// {allocated} and {uri, allocation}, a port's {port-type, allocated} and
// {switch, fds, ifname}.
type SyncReply struct {
	Backing string `json:"backing,omitempty"`
	Meta    struct {
		Allocated *bool `json:"allocated"`
	} `json:"meta"`
	Spec struct {
		URI        *string `json:"uri"`
		Allocation *int64  `json:"allocation"`
		Switch     *string `json:"switch"`
		Ifname     *string `json:"ifname"`
	} `json:"spec"`
}

// PoolReply is create_pool_connection's "out": a filesystem pool's path
// or an NFS pool's mount point on the node.
type PoolReply struct {
	Spec struct {
		Path  string `json:"path"`
		Mount string `json:"mount"`
	} `json:"spec"`
}

// DecodeOut reads a reply's "out", as the XML-RPC client decoded it,
// into v: the controller's one step from untyped values to the wire's
// types.
func DecodeOut(out any, v any) error {
	if out == nil {
		return nil
	}
	data, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("unexpected reply %s: %w", data, err)
	}
	return nil
}

// VolumeFormat is the image format a volume's file name says, as
// upstream names files <image_name>.<image_format>: qcow2, or raw.
func VolumeFormat(path string) string { return volumeFormat(path) }
