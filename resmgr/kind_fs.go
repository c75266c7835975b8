package resmgr

import (
	"fmt"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/vtcluster/vtcluster/resmgr/node"
)

// filesystem: a directory on each node ("path"; empty: the node's
// default under its agent data dir).
func init() {
	registerPoolKind(PoolFilesystem, poolKind{
		holds: TypeVolume,
		fromParams: func(c *PoolConfig, p gjson.Result) error {
			path := p.Get("path").String()
			if path != "" {
				if err := checkPoolPath(path); err != nil {
					return fmt.Errorf("path: %w", err)
				}
			}
			c.Spec.Path = &path
			return nil
		},
		attached: func(p *Pool, n string, out node.PoolReply) {
			path := out.Spec.Path
			if path == "" {
				return
			}
			if p.Paths == nil {
				p.Paths = map[string]string{}
			}
			p.Paths[n] = path
			if len(p.Config.Meta.Access.Nodes) == 1 {
				// As upstream shows it; per node in Paths.
				p.Config.Spec.Path = &path
			}
		},
	})
}

func checkPoolPath(p string) error {
	if strings.HasPrefix(p, "/") {
		return node.CheckAbsPath(p)
	}
	return node.CheckFilename(p)
}
