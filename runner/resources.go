package runner

import (
	"regexp"
	"sort"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/resmgr"
)

// A test's "resources" list declares what it needs besides nodes:
//
//	"resources": [
//	  {"name": "disk", "type": "volume", "on": ["src", "dst"], "allocate": "src",
//	   "params": {"image_size": "1G", "image_format": "raw",
//	              "volume_pool_selectors": "[{'key': 'type', 'operator': '==', 'values': 'filesystem'}]"}},
//	  {"name": "net", "type": "port", "on": "*", "params": {"network_type": "linux_bridge"}}
//	]
//
// Steps reach a resource as {tag.resource_NAME}; the command as
// $VTCLUSTER_RESOURCE_<NAME>_<TAG> and in the partition file.
// A volume is one resource bound to every tag of "on" and allocated on
// "allocate" (default: the first of "on"). A port is one tap port per tag
// of "on", each allocated on its own node. "params" are upstream's
// Cartesian parameters for the resource (image_size, image_format,
// image_name, volume_pool_selectors, storage_type, port_pool_selectors,
// network_type), strings as upstream reads them.

// ResourceSpec is one resource a test declares: the resource manager's
// own request type (Name; Type "volume" or "port"; On, the tags it is
// bound to in the test's node order; Allocate, the tag whose node
// allocates a volume; Params, upstream's parameters), carried through
// unchanged.
type ResourceSpec = resmgr.Want

// acquiredResource is one resource as the test sees it on one node: the
// resource manager's own type, carried through unchanged (Value for the
// test; Node, Path and Format, Ifname and MAC for the VM service).
type acquiredResource = resmgr.Acquired

// resourceNameRE: names are also placeholder fields ({tag.resource_NAME})
// and environment variable parts.
var resourceNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// resourceParamRE is upstream's parameter-name shape (image_size,
// volume_pool_selectors_image1, ...).
var resourceParamRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

func (l *specLoader) resources(v *jsonValue, p string, t *Test) []ResourceSpec {
	if v.Kind != py.JSONArray {
		l.errorf(p, "expected a list of resource objects, got %s", v.Describe())
		return nil
	}
	if len(v.Elems) > 0 && len(t.Nodes) == 0 {
		l.errorf(p, "resources need nodes; the test has none")
		return nil
	}
	var out []ResourceSpec
	names := map[string]bool{}
	for i, e := range v.Elems {
		at := jsonPath(p, i)
		var rs ResourceSpec
		isObject := l.object(e, at, "a resource object", fields{
			"name": func(v *jsonValue, mp string) {
				rs.Name = l.str(v, mp)
				if v.Kind == py.JSONString && !resourceNameRE.MatchString(rs.Name) {
					l.errorf(mp, "must be 1-64 letters, digits or '_'")
				}
				if names[rs.Name] {
					l.errorf(mp, "resource %q declared twice", rs.Name)
				}
				names[rs.Name] = true
			},
			"type": func(v *jsonValue, mp string) {
				rs.Type = l.str(v, mp)
				if v.Kind == py.JSONString && rs.Type != "volume" && rs.Type != "port" {
					l.errorf(mp, "expected \"volume\" or \"port\", got %q", rs.Type)
				}
			},
			"on":       func(v *jsonValue, mp string) { rs.On = l.stepTargets(v, mp, t) },
			"allocate": set(&rs.Allocate, l.str),
			"params":   set(&rs.Params, l.resourceParams),
		}, l.atKey("allowed: name, type, on, allocate, params"))
		if !isObject {
			continue
		}
		for _, k := range []string{"name", "type", "on"} {
			if e.Get(k) == nil {
				l.errorf(at, "missing required key %q", k)
			}
		}
		switch {
		case rs.Type == "port" && rs.Allocate != "":
			l.errorf(jsonPath(at, "allocate"), "a port is allocated on each node of \"on\"; leave allocate out")
		case rs.Type == "volume" && rs.Allocate == "" && len(rs.On) > 0:
			rs.Allocate = rs.On[0]
		case rs.Type == "volume" && rs.Allocate != "":
			found := false
			for _, o := range rs.On {
				found = found || o == rs.Allocate
			}
			if !found {
				l.errorf(jsonPath(at, "allocate"), "tag %q is not in \"on\"", rs.Allocate)
			}
		}
		out = append(out, rs)
	}
	return out
}

func (l *specLoader) resourceParams(v *jsonValue, p string) map[string]string {
	if v.Kind != py.JSONObject {
		l.errorf(p, "expected an object of parameter -> string, got %s", v.Describe())
		return nil
	}
	out := map[string]string{}
	for _, m := range v.Members {
		at := jsonPath(p, m.Key)
		switch {
		case !resourceParamRE.MatchString(m.Key):
			l.errorf(at, "invalid parameter name")
		case m.Value.Kind != py.JSONString:
			l.errorf(at, "expected a string (Cartesian params are strings), got %s", m.Value.Describe())
		case len(m.Value.Str) > 4096:
			l.errorf(at, "longer than 4096 bytes")
		default:
			out[m.Key] = m.Value.Str
		}
	}
	return out
}

// resourceEnv adds VTCLUSTER_RESOURCE_<NAME>_<TAG>=<path or ifname> for
// each acquired resource.
func resourceEnv(vars map[string]string, got []acquiredResource) {
	for _, a := range got {
		vars[envResPrefix+envTag(a.Name)+"_"+envTag(a.Tag)] = a.Value
	}
}

// resourceMessage is the partition file's "resources" object:
// {name: {"type", "id", "nodes": {tag: path or ifname}}}.
func resourceMessage(got []acquiredResource) message {
	byName := map[string]*message{}
	var order []string
	ids := map[string]map[string]bool{}
	typ := map[string]string{}
	for _, a := range got {
		if _, ok := byName[a.Name]; !ok {
			byName[a.Name] = &message{}
			order = append(order, a.Name)
			ids[a.Name] = map[string]bool{}
		}
		*byName[a.Name] = append(*byName[a.Name], field{Key: a.Tag, Value: a.Value})
		ids[a.Name][a.ID] = true
		typ[a.Name] = a.Type
	}
	out := message{}
	for _, n := range order {
		var idl []any
		var sorted []string
		for id := range ids[n] {
			sorted = append(sorted, id)
		}
		sort.Strings(sorted)
		for _, id := range sorted {
			idl = append(idl, id)
		}
		out = append(out, field{Key: n, Value: message{{Key: "type", Value: typ[n]}, {Key: "ids", Value: idl}, {Key: "nodes", Value: *byName[n]}}})
	}
	return out
}
